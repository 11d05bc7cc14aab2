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
        "--e2e-size", "48", "--e2e-steps", "30", "--e2e-paths", "host", "device", "torch",
        "--out", str(tmp_path),
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


def test_the_gpu_run_rehearsal_goes_on_past_a_crashed_step(tmp_path):
    """gpu-run.sh on the CPU, quick, with step 2's process dying as a CUDA crash would: every later
    step still runs, a failing row leaves its table's other rows, and the summary says what's left."""
    pytest.importorskip("torch")
    env = {
        **os.environ,
        "BENCH_DEVICE": "cpu",
        "BENCH_QUICK": "1",
        "BENCH_FAIL": "2:exit,4@device",
        "PYTHON": sys.executable,
        "OUT": str(tmp_path),
    }
    done = subprocess.run(
        ["bash", str(BENCHMARKS / "gpu-run.sh")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    out = done.stdout
    assert done.returncode == 0, (out + done.stderr)[-3000:]
    assert "== step 2 check: failed (exit 139)" in out, out
    for later in ("3 loop", "4 table", "5 e2e", "6 levers"):
        assert f"== step {later}: ok" in out, out
    # table 1 lost only its device row, with its one-line cause
    assert "device: failed: RuntimeError: CUDA failure (injected: BENCH_FAIL=4@device)" in out, out
    assert "host/device" not in out and " host " in out.split("== step 4 table")[1], out
    summary = out.split("== summary")[1]
    rows = {line.split()[0]: line for line in summary.splitlines()[1:] if line[:1].isalpha()}
    assert "not measured" in rows["vs-cpu"] and "not measured" in rows["outside"], summary
    assert " met " in rows["loop"], summary  # device and host loops agree (not a timing)
    assert "not measured" not in rows["e2e"], summary  # measured; its 20 s target is the GPU's
    assert (tmp_path / "gpu-run.log").read_text().count("== step") >= 14
    assert (tmp_path / "e2e" / "e2e-device.png").exists()


def test_the_frames_benchmark_prints_its_table(tmp_path):
    out = _run(
        "bench_frames.py", "--clips", "shapes", "--styles", "swirls", "--frames", "3",
        "--size", "48", "--steps", "3", "--chunk", "2", "--overlap", "1", "--out", str(tmp_path),
    )  # fmt: skip
    rows = [line.split() for line in out.splitlines() if line.startswith("shapes   swirls")]
    assert [row[2] for row in rows[:2]] == ["0", "150"] and "seam pairs' flicker" in out, out
    assert (tmp_path / "shapes-swirls-w150.png").exists()
