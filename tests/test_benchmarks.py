"""The benchmarks still run against the engine (tiny sizes; no timing is asserted). A GPU session has
minutes for benchmarks/gpu-run.sh: a benchmark that an engine change broke must fail here, not there."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"


def _run(script: str, *args: str) -> str:
    pytest.importorskip("torch")
    env = {**os.environ, "PYTHONPATH": str(BENCHMARKS)}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done.stdout


def test_the_device_benchmark_prints_its_tables(tmp_path):
    # 30 evaluations: two segments a scale, where the engine would steer its gain
    out = _run(
        "bench_device.py", "--device", "cpu", "--sizes", "48", "--evals", "1", "--repeat", "1",
        "--e2e-size", "48", "--e2e-steps", "30", "--out", str(tmp_path),
    )  # fmt: skip
    losses = {
        line.split()[0]: float(line.split()[-1].rstrip("%"))
        for line in out.splitlines()
        if line.strip().startswith(("host ", "device ", "torch ")) and line.strip()[-1] == "%"
    }
    assert set(losses) == {"host", "device", "torch"}, out
    # one loss for every path (no steering in the comparison): the final losses agree
    assert all(abs(v) < 3 for v in losses.values()), out
    assert {p.name for p in tmp_path.iterdir()} == {f"e2e-{p}.png" for p in losses}


@pytest.mark.parametrize("balance", ["initial", "gradient"])
def test_the_judge_scores_a_pair_and_draws_its_sheet(tmp_path, balance):
    out = _run(
        "judge.py", "--pairs", "hopper:bricks", "--size", "48", "--set", "steps=4",
        "--balance", balance, "--out", str(tmp_path),
    )  # fmt: skip
    assert "hopper        bricks" in out and "reduction min" in out, out
    assert (tmp_path / "sheet-hopper.png").exists() and (tmp_path / "results.json").exists()
