"""Checkpoints: safetensors + JSON manifest, atomic writes, verified loads, bit-for-bit resume."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch

import sdeflow
from sdeflow.data.datasets import nine_gaussians
from sdeflow.training import CheckpointError, Trainer, list_checkpoints, load_checkpoint, save_checkpoint
from sdeflow.utils import atomic as atomic_mod

K = 12  # steps before and after the interruption (2K straight)


def make_model(process: str = "vp", hidden: int = 16) -> sdeflow.ScoreModel:
    torch.manual_seed(0)
    return sdeflow.ScoreModel(sdeflow.create_model("mlp", dim=2, hidden=hidden, depth=1),
                              sdeflow.create_process(process))


def tensor_data() -> torch.Tensor:
    return nine_gaussians().sample(100, torch.Generator().manual_seed(0)).to(torch.float32)


def make_data(kind: str):
    if kind == "tensor":
        return tensor_data()  # 100 rows, batch 16: epochs end mid-run, so the reshuffle is resumed too
    if kind == "distribution":
        return nine_gaussians(dtype=torch.float32)
    if kind == "iterable":
        return list(tensor_data().split(16))  # 7 batches per pass: the pass restarts mid-run
    raise AssertionError(kind)


# Every feature that carries state is on: warm-up (scheduler), clipping, EMA with warm-up, Adam moments.
OPTS = dict(steps=2 * K, batch_size=16, lr=5e-3, warmup_steps=5, grad_clip=0.5, ema_decay=0.9, log_every=5)


def make_trainer(out_dir=None, data_kind: str = "tensor", **kw) -> Trainer:
    return Trainer(make_model(), make_data(data_kind), out_dir=out_dir, **{**OPTS, **kw})


def assert_same_state(a: Trainer, b: Trainer) -> None:
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb), ka
    assert a.ema is not None and b.ema is not None
    assert a.ema.num_updates == b.ema.num_updates
    for k in a.ema.shadow:
        assert torch.equal(a.ema.shadow[k], b.ema.shadow[k]), f"ema {k}"
    sa, sb = a.optimizer.state_dict(), b.optimizer.state_dict()
    as_json = lambda groups: json.loads(json.dumps(groups))  # noqa: E731 - tuples and lists alike
    assert as_json(sa["param_groups"]) == as_json(sb["param_groups"])
    for idx in sa["state"]:
        for name, val in sa["state"][idx].items():
            other = sb["state"][idx][name]
            assert torch.equal(torch.as_tensor(val), torch.as_tensor(other)), (idx, name)
    assert a.scheduler.last_epoch == b.scheduler.last_epoch
    assert a.step == b.step


@pytest.mark.parametrize("data_kind", ["tensor", "distribution", "iterable"])
def test_resume_is_bit_for_bit(tmp_path: Path, data_kind: str) -> None:
    """2K steps straight == K steps, a fresh process-like Trainer resuming, K more: torch.equal everywhere."""
    straight = make_trainer(data_kind=data_kind)
    straight.fit()
    first = make_trainer(tmp_path, data_kind=data_kind)
    first.fit(K)
    del first
    torch.manual_seed(12345)  # a different global RNG state, as in a new process: resume must restore it
    resumed = make_trainer(tmp_path, data_kind=data_kind)
    assert resumed.resume() == K
    resumed.fit()
    assert_same_state(straight, resumed)
    # and the next batch each would draw is the same (data order carried across the restart)
    assert torch.equal(straight.data.next(), resumed.data.next())
    assert torch.equal(straight.noise_generator.get_state(), resumed.noise_generator.get_state())


def test_round_trip_restores_every_piece(tmp_path: Path) -> None:
    tr = make_trainer(tmp_path)
    tr.fit(K)
    path = tr.save()
    assert path == tmp_path / f"step_{K:08d}.json" and path.with_suffix(".safetensors").is_file()
    ck = load_checkpoint(path)
    assert ck.step == K and ck.manifest["format"] == "sdeflow-checkpoint/1"
    for k, v in tr.model.state_dict().items():
        assert torch.equal(ck.section("model")[k], v), k
    for k, v in tr.ema.shadow.items():
        assert torch.equal(ck.section("ema")[k], v), k
    assert ck.manifest["ema_updates"] == K
    assert torch.equal(ck.tensors["rng.noise"], tr.noise_generator.get_state())
    assert torch.equal(ck.tensors["rng.torch"], torch.get_rng_state())
    assert torch.equal(ck.section("data")["perm"], tr.data.perm)
    assert torch.equal(ck.section("data")["generator"], tr.data.generator.get_state())
    assert ck.manifest["data"]["pos"] == tr.data.pos
    assert ck.manifest["parametrization"] == "eps" and ck.manifest["process_class"] == "VPProcess"

    fresh = make_trainer(tmp_path)
    fresh.resume(path)
    assert_same_state(tr, fresh)
    assert fresh.last_checkpoint == path
    assert fresh.losses == tr.losses
    assert torch.equal(fresh.data.next(), tr.data.next())
    # also from the tensor file's name and from the folder (the newest valid checkpoint)
    assert load_checkpoint(path.with_suffix(".safetensors")).step == K
    assert load_checkpoint(tmp_path).step == K


def test_files_are_safetensors_and_json(tmp_path: Path) -> None:
    tr = make_trainer(tmp_path)
    tr.fit(3)
    manifest = json.loads((tmp_path / "step_00000003.json").read_text())
    assert manifest["step"] == 3 and manifest["tensors_file"] == "step_00000003.safetensors"
    blob = (tmp_path / "step_00000003.safetensors").read_bytes()
    header_len = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + header_len])  # safetensors: u64 length + JSON header + raw tensor bytes
    assert "model.network.out.weight" in header and "rng.torch" in header
    assert manifest["size"] == len(blob)


def test_loading_never_unpickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tr = make_trainer(tmp_path)
    tr.fit(4)

    def forbidden(*args, **kwargs):
        raise AssertionError("a checkpoint load tried to unpickle")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    assert load_checkpoint(tmp_path).step == 4
    fresh = make_trainer(tmp_path)
    assert fresh.resume() == 4
    assert_same_state(tr, fresh)


# --------------------------------------------------------------------------- broken files
def _saved(tmp_path: Path, steps: int = 3) -> Path:
    tr = make_trainer(tmp_path)
    tr.fit(steps)
    return tmp_path / f"step_{steps:08d}.json"


def test_truncated_tensor_file_is_a_clear_error(tmp_path: Path) -> None:
    manifest = _saved(tmp_path)
    tensors = manifest.with_suffix(".safetensors")
    tensors.write_bytes(tensors.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated or corrupted") as info:
        load_checkpoint(manifest)
    assert str(tensors) in str(info.value)


def test_corrupted_tensor_file_is_a_clear_error(tmp_path: Path) -> None:
    manifest = _saved(tmp_path)
    tensors = manifest.with_suffix(".safetensors")
    blob = bytearray(tensors.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # same size, one byte flipped inside the tensor data
    tensors.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="hash mismatch") as info:
        load_checkpoint(manifest)
    assert str(tensors) in str(info.value)
    with pytest.raises(CheckpointError, match=str(tensors.name)):
        make_trainer(tmp_path).resume(manifest)


def test_tensor_file_that_is_not_safetensors(tmp_path: Path) -> None:
    """Bytes that match the manifest's hash but are not safetensors: refused, not unpickled."""
    blob = pickle.dumps({"w": [1.0, 2.0]})
    import hashlib

    (tmp_path / "step_00000001.safetensors").write_bytes(blob)
    (tmp_path / "step_00000001.json").write_text(json.dumps({
        "format": "sdeflow-checkpoint/1", "step": 1, "tensors_file": "step_00000001.safetensors",
        "sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob)}))
    with pytest.raises(CheckpointError, match="not valid safetensors") as info:
        load_checkpoint(tmp_path / "step_00000001.json")
    assert "step_00000001.safetensors" in str(info.value)


@pytest.mark.parametrize("content,match", [
    ("{not json", "not valid JSON"),
    (json.dumps({"format": "something-else/3", "step": 3}), "not an sdeflow checkpoint manifest"),
    (json.dumps([1, 2, 3]), "not an sdeflow checkpoint manifest"),
])
def test_bad_manifest_is_a_clear_error(tmp_path: Path, content: str, match: str) -> None:
    manifest = _saved(tmp_path)
    manifest.write_text(content)
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(manifest)
    assert str(manifest) in str(info.value)


def test_truncated_manifest_and_missing_files(tmp_path: Path) -> None:
    manifest = _saved(tmp_path)
    text = manifest.read_text()
    manifest.write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(manifest)
    manifest.write_text(text)
    manifest.with_suffix(".safetensors").unlink()
    with pytest.raises(CheckpointError, match="cannot be read") as info:
        load_checkpoint(manifest)
    assert "step_00000003.safetensors" in str(info.value)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "step_00000099.json")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(empty)


def test_folder_load_falls_back_to_the_newest_valid_checkpoint(tmp_path: Path) -> None:
    tr = make_trainer(tmp_path, checkpoint_every=2, keep_checkpoints=0)
    tr.fit(6)
    newest = tmp_path / "step_00000006.safetensors"
    newest.write_bytes(newest.read_bytes()[:10])
    assert load_checkpoint(tmp_path).step == 4
    for p in tmp_path.glob("*.safetensors"):
        p.write_bytes(b"")
    with pytest.raises(CheckpointError, match="no valid checkpoint") as info:
        load_checkpoint(tmp_path)
    assert "step_00000002.safetensors" in str(info.value) and "step_00000006.safetensors" in str(info.value)


def test_checkpoint_of_another_model_is_a_clear_error(tmp_path: Path) -> None:
    _saved(tmp_path)
    other = Trainer(make_model(hidden=8), tensor_data(), **OPTS)
    with pytest.raises(CheckpointError, match="does not fit this trainer") as info:
        other.resume(tmp_path)
    assert "step_00000003.json" in str(info.value)
    wrong_data = Trainer(make_model(), nine_gaussians(dtype=torch.float32), **OPTS)
    with pytest.raises(CheckpointError, match="tensor data"):
        wrong_data.resume(tmp_path)


def test_resume_from_an_empty_folder_starts_at_zero(tmp_path: Path) -> None:
    tr = make_trainer(tmp_path / "new")
    assert tr.resume() == 0 and tr.step == 0
    with pytest.raises(sdeflow.errors.OptionError, match="out_dir"):
        make_trainer().resume()
    with pytest.raises(sdeflow.errors.OptionError, match="out_dir"):
        make_trainer().save()


# --------------------------------------------------------------------------- interrupted saves
@pytest.mark.parametrize("fail_on", [1, 2])
def test_interrupted_rename_leaves_the_previous_checkpoint_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   fail_on: int) -> None:
    """A crash at the tensor file's rename (1) or at the manifest's rename (2) of the step-8 save."""
    tr = make_trainer(tmp_path, checkpoint_every=4)
    tr.fit(4)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_replace = os.replace
    calls = {"n": 0}

    def flaky_replace(src, dst):
        calls["n"] += 1
        if calls["n"] == fail_on:
            raise OSError("simulated crash during rename")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic_mod.os, "replace", flaky_replace)
    with pytest.raises(OSError, match="simulated crash"):
        tr.fit(8)
    monkeypatch.undo()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000004.json"]
    for name, data in before.items():
        assert (tmp_path / name).read_bytes() == data, name
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")], "temporary files left behind"
    resumed = make_trainer(tmp_path, checkpoint_every=4)
    assert resumed.resume() == 4
    assert load_checkpoint(tmp_path).step == 4


def test_interrupted_write_leaves_the_previous_checkpoint_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The write itself fails midway (disk full at fsync): nothing of the new step becomes visible."""
    tr = make_trainer(tmp_path, checkpoint_every=4)
    tr.fit(4)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def disk_full(fd):
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(atomic_mod.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        tr.fit(8)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert make_trainer(tmp_path).resume() == 4


def test_save_checkpoint_overwrites_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-saving the same step: a failure keeps the old pair readable and consistent."""
    save_checkpoint(tmp_path, 1, {"a": torch.zeros(3)}, {"note": "old"})
    monkeypatch.setattr(atomic_mod.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError, match="boom"):
        save_checkpoint(tmp_path, 1, {"a": torch.ones(3)}, {"note": "new"})
    monkeypatch.undo()
    ck = load_checkpoint(tmp_path / "step_00000001.json")
    assert ck.manifest["note"] == "old" and torch.equal(ck.tensors["a"], torch.zeros(3))


# --------------------------------------------------------------------------- pruning
def test_keep_checkpoints_prunes_the_oldest(tmp_path: Path) -> None:
    tr = make_trainer(tmp_path, checkpoint_every=2, keep_checkpoints=3)
    tr.fit(10)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"step_{s:08d}.{ext}" for s in (6, 8, 10) for ext in ("json", "safetensors")]
    # a final save at a step that is not a multiple of checkpoint_every, still pruned to 3
    tr.fit(11)
    assert [p.name for p in list_checkpoints(tmp_path)] == [f"step_{s:08d}.json" for s in (8, 10, 11)]


def test_keep_zero_keeps_all(tmp_path: Path) -> None:
    tr = make_trainer(tmp_path, checkpoint_every=2, keep_checkpoints=0)
    tr.fit(8)
    assert [p.name for p in list_checkpoints(tmp_path)] == [f"step_{s:08d}.json" for s in (2, 4, 6, 8)]
