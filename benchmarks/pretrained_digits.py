"""Solver accuracy on a real network: a diffusers UNet2DModel trained with sdeflow on the 8x8 digits.

1. A diffusers ``UNet2DModel`` (8x8, one channel, ~160k parameters) with a ``DDPMScheduler``
   (linear betas 1e-4..0.02, N = 1000, epsilon prediction) is wrapped by
   ``sdeflow.interop.from_diffusers`` and trained by ``sdeflow.training.Trainer`` on the digits'
   training split (1,438 images, 17 grey levels on [-1, 1], uniformly dequantized), then saved
   with ``save_diffusers`` (EMA weights) in diffusers' layout and loaded back from that folder.
2. ``sdeflow.bench.network.run_network_bench`` on the loaded network: every deterministic sdeflow
   sampler and every deterministic diffusers scheduler start from the same ``paths`` prior draws
   ``x_T``; each end state is compared with a dopri8 solution of the probability-flow ODE from the
   same ``x_T`` (its own error bounded by the distance to the solution at 100x the tolerance);
   NFE budgets 5, 8, 10, 20, 50; empirical orders.

Writes ``OUT/model`` (the diffusers folder), ``OUT/bench`` (table, CSV, JSON, summary.md, plot) and
``OUT/samples.png`` (DPM-Solver++ 2M, 20 steps), and prints the table. The load (``uptime``) and the
timings are in ``OUT/bench/bench.json`` (``meta``) and printed.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/pretrained_digits.py --out pretrained_out           # CPU
    python benchmarks/pretrained_digits.py --device cuda --steps 4000 --out pretrained_gpu  # a GPU
    python benchmarks/pretrained_digits.py --skip-train --out pretrained_out                # bench again
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch


def build_unet(seed: int, width: int):  # type: ignore[no-untyped-def]
    import diffusers

    torch.manual_seed(seed)
    return diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(width, 2 * width),
                                 layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8)


def load_avg() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return "n/a"


def train(args: argparse.Namespace, device: torch.device) -> dict:
    import diffusers

    from sdeflow.data.images import DIGITS_LEVELS, DequantizedImages, load_digits_split
    from sdeflow.interop import from_diffusers, save_diffusers
    from sdeflow.training import Trainer

    unet = build_unet(args.seed, args.width)
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type="epsilon")
    model = from_diffusers(unet, scheduler=scheduler, device=device).train()
    data = DequantizedImages(load_digits_split("train"), DIGITS_LEVELS, dtype=torch.float32)
    trainer = Trainer(model, data, steps=args.steps, batch_size=args.batch_size, lr=args.lr, ema_decay=0.995,
                      warmup_steps=100, lr_schedule="cosine", min_lr_ratio=0.1, seed=args.seed, progress=True,
                      log_every=100)
    t0, load0 = time.perf_counter(), load_avg()
    result = trainer.fit()
    seconds = time.perf_counter() - t0
    save_diffusers(trainer.ema_model(), Path(args.out) / "model", overwrite=True)
    losses = result.losses
    info = dict(steps=args.steps, batch_size=args.batch_size, lr=args.lr, parameters=sum(p.numel() for p in unet.parameters()),
                seconds=seconds, load_before=load0, load_after=load_avg(), first_loss=losses[0][1], last_loss=losses[-1][1])
    print(f"trained {info['parameters']} parameters for {args.steps} steps in {seconds:.0f} s "
          f"(loss {info['first_loss']:.3f} -> {info['last_loss']:.3f}; load {load0} -> {info['load_after']})")
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="pretrained_out")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=1500, help="training steps (default 1500: a few CPU minutes)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--width", type=int, default=16, help="channels of the first UNet level (the second has twice)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-train", action="store_true", help="reuse OUT/model")
    ap.add_argument("--paths", type=int, default=16)
    ap.add_argument("--nfe", default="5,8,10,20,50")
    ap.add_argument("--samplers", default=None, help="comma-separated configuration labels (default: one per sampler)")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--reference-tol", type=float, default=1e-7)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import sdeflow
    from sdeflow.bench.network import NetworkBenchSpec, network_table, run_network_bench, write_network_outputs
    from sdeflow.cli.outputs import save_image_grid
    from sdeflow.interop import from_diffusers

    info = None if args.skip_train else train(args, device)
    model = from_diffusers(out / "model", device=device)  # the round trip through diffusers' layout
    with torch.no_grad():
        grid = sdeflow.create_sampler("dpm_solver", steps=20, denoise=True).sample(
            model, (64, 1, 8, 8), torch.Generator().manual_seed(args.seed)).samples
    save_image_grid(out / "samples.png", grid.cpu())
    spec = NetworkBenchSpec(nfe=[int(b) for b in args.nfe.split(",")], paths=args.paths, seed=args.seed,
                            device=str(device), dtype=args.dtype, reference_tol=args.reference_tol)
    if args.samplers:
        spec.samplers = [s.strip() for s in args.samplers.split(",")]
    load0 = load_avg()
    result = run_network_bench(model, (1, 8, 8), spec, label="digits-unet", echo=print)
    result.meta.update(load_before=load0, load_after=load_avg(), training=info,
                       omp_num_threads=os.environ.get("OMP_NUM_THREADS"), torch_threads=torch.get_num_threads())
    write_network_outputs(result, out / "bench")
    print(network_table(result))
    print(json.dumps({k: result.meta[k] for k in ("seconds", "load_before", "load_after", "device", "dtype")}))


if __name__ == "__main__":
    main()
