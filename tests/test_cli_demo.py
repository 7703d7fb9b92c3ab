"""``sdeflow demo --quick`` writes every output, and the console script works as a real process
(success and a bad-input error without a traceback)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from sdeflow.cli import main
from sdeflow.cli.demo import QUICK_CONFIGS, QUICK_FLOW_CONFIGS
from sdeflow.training import load_checkpoint, load_score_model


def test_demo_quick_trains_compares_and_writes_everything(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    res = CliRunner().invoke(main, ["demo", "--quick", "--out", str(out), "-n", "400", "--no-progress"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert {"table.md", "table.csv", "table.json", "samples.png", "loss.png", "losses.csv", "model"} <= {
        p.name for p in out.iterdir()}
    data = json.loads((out / "table.json").read_text())
    rows = data["rows"]
    labels = [label for label, _, _ in QUICK_CONFIGS]
    flow_labels = [label for label, _, _ in QUICK_FLOW_CONFIGS]
    assert [(r["model"], r["sampler"]) for r in rows] == (
        [(m, s) for m in ("exact", "trained") for s in labels]
        + [(m, s) for m in ("exact flow", "trained flow") for s in flow_labels])
    assert data["training"]["steps"] == 150 and data["samples"] == 400
    for r in rows:
        assert r["nfe"] > 0 and r["seconds"] > 0 and r["gap_stderr"] > 0 and 0 <= r["near_mode"] <= 1
    # the exact score with a fine reverse SDE is within noise of the target (sampler error only):
    # |gap| <= 4 standard errors, and nearly all samples lie near a mode
    sde = rows[0]
    assert abs(sde["log_density_gap"]) <= 4 * sde["gap_stderr"] + 0.05 and sde["near_mode"] > 0.95
    with open(out / "table.csv") as fh:
        assert len(list(csv.DictReader(fh))) == len(rows)
    md = (out / "table.md").read_text()
    assert "| exact | sde euler 100 |" in md and "| trained | heun (EDM) 10 |" in md and "noise floor" in md
    assert md.strip() in res.output.replace("\r", "")
    assert load_checkpoint(out / "model").step == 150
    assert load_score_model(out / "model").network.out.weight.shape == (2, 32)
    flow = load_score_model(out / "flow_model")
    assert flow.parametrization == "velocity" and type(flow.process).__name__ == "RectifiedFlowProcess"
    # the exact flow with 20 Euler steps: most samples near a mode
    assert [r for r in rows if r["model"] == "exact flow"][0]["near_mode"] > 0.9
    assert "| trained flow | ode euler 20 |" in md
    assert (out / "samples.png").stat().st_size > 5000 and (out / "loss.png").stat().st_size > 2000


def test_demo_bad_flags() -> None:
    res = CliRunner().invoke(main, ["demo", "--samples", "5"])
    assert res.exit_code == 2 and "5 is not in the range x>=10" in res.output
    res = CliRunner().invoke(main, ["demo", "--dtype", "int8"])
    assert res.exit_code == 2 and "'int8' is not one of 'float32', 'float64'" in res.output


def _exe() -> list[str]:
    exe = shutil.which("sdeflow", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "sdeflow.cli"]


def test_console_script_runs_train_and_reports_bad_input(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    good = subprocess.Popen([*_exe(), "train", "--steps", "3", "--batch-size", "8", "--model-opt", "hidden=8",
                             "--model-opt", "depth=1", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "r")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    bad = subprocess.Popen([*_exe(), "sample", str(tmp_path / "missing")], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    out, err = good.communicate(timeout=180)
    assert good.returncode == 0, err
    assert "step 3: loss" in out and load_checkpoint(tmp_path / "r").step == 3
    out, err = bad.communicate(timeout=180)
    assert bad.returncode == 1
    assert f"Error: checkpoint manifest {tmp_path / 'missing'} does not exist" in err and "Traceback" not in err
