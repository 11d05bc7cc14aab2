"""The cost of the link: a worker behind ssh on 127.0.0.1 against a local worker, for a 1024 px and
a 4 Mpx (2048 px) layer, in the GIMP plug-in's pixel format (rgba8) with examples/swirls.jpg as
the style.

Per transport: the bytes each way for one job, the seconds to start the worker and say hello
(once per GIMP dialog or CLI run), the transfer alone (a ping carrying exactly the job's upload
and answered with its download, median of 5) and a whole job with a trivial computation (one
evaluation at 64 px: the content is still converted, shrunk, and the result grown back and
encoded at full size, median of 3), whose difference from the local worker with temporary files
is the link's extra seconds. The larger of the transfer and the extra seconds is set against a
GPU-class job (the assumption printed below).

    python benchmarks/bench_link.py                  # needs /usr/sbin/sshd and ssh (as root)
    python benchmarks/bench_link.py --sizes 1024 --repeat 1

Loopback ssh measures encryption and protocol, not a network: over a real link add bytes /
bandwidth (e.g. 1 Gbit/s ≈ 110 MB/s, 100 Mbit/s ≈ 11 MB/s; `ssh -C` compresses for slow links).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from onnxstyle.plugin.client import Pixels, WorkerClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the tests' sshd helper: a real sshd on 127.0.0.1

import sshd  # noqa: E402 (after the path above)

STYLE = ROOT / "examples" / "swirls.jpg"
CONTENT = ROOT / "examples" / "chelsea.jpg"
JOB = {"preset": "draft", "device": "cpu", "steps": 1, "scales": 1, "max_size": 64}
# GPU-class jobs (docs/decisions/session-settings.md's H100 numbers: grad graph 8 ms at 512 px, 78 ms at 2048 px, the
# optimiser on the device): 1024 px "normal", 5 scales x 150 evaluations at ~37 ms summed over the
# scales ≈ 5.5 s; 2048 px "high", 6 scales x 300 at ~112 ms ≈ 34 s (a 2048 px run measured 36-45 s
# before the device optimiser).
GPU_JOB_S = {1024: 5.5, 2048: 34.0}


def content(side: int) -> Pixels:
    """A photo (not noise: what a layer holds) at side x side, rgba8 with an opaque alpha."""
    with Image.open(CONTENT) as im:
        rgba = im.convert("RGBA").resize((side, side), Image.Resampling.BICUBIC)
    return Pixels(side, side, "rgba8", np.asarray(rgba).tobytes())


def transports(server: sshd.SshServer) -> dict[str, tuple[list[str], bool]]:
    """name -> (worker command, files allowed)."""
    local = sshd.worker_args()
    ssh = server.command(local)
    return {
        "local, temp files": (local, True),
        "local, frames": (local, False),
        "ssh, frames": (ssh, False),
        "ssh -C, frames": (ssh[:1] + ["-C"] + ssh[1:], False),
    }


def measure(command: list[str], files: bool, pixels: Pixels, repeat: int) -> dict[str, float]:
    started = time.perf_counter()
    with WorkerClient(command, files=files) as worker:
        worker.hello()
        start = time.perf_counter() - started
        worker.stylize(pixels, [(STYLE, 1.0)], JOB)  # warm: the graphs load once
        sent, received = worker.bytes_sent, worker.bytes_received
        worker.bytes_sent = worker.bytes_received = 0
        jobs = []
        for _ in range(repeat):
            began = time.perf_counter()
            worker.stylize(pixels, [(STYLE, 1.0)], JOB)
            jobs.append(time.perf_counter() - began)
        up, down = worker.bytes_sent // repeat, worker.bytes_received // repeat
        pings = [worker.ping(upload=up, download=len(pixels.data)) for _ in range(5)]
    return {
        "up": up,
        "down": down,
        "start": start,
        "transfer": statistics.median(pings),
        "job": statistics.median(jobs),
        "warm_up": sent,
        "warm_down": received,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    server = sshd.start_server()
    try:
        print(f"style {STYLE.name} ({STYLE.stat().st_size / 1e3:.0f} kB); job: {JOB}")
        print(
            f"GPU-class job assumed: {', '.join(f'{s} px {t:g} s' for s, t in GPU_JOB_S.items())}"
        )
        header = (
            f"{'size':>10} {'transport':<18} {'up MB':>7} {'down MB':>8} {'start s':>8} "
            f"{'transfer s':>10} {'job s':>7} {'extra s':>8} {'% of GPU job':>12}"
        )
        print(header)
        for side in args.sizes:
            pixels = content(side)
            base = None
            for name, (command, files) in transports(server).items():
                row = measure(command, files, pixels, args.repeat)
                base = row["job"] if base is None else base
                extra = row["job"] - base
                gpu = GPU_JOB_S.get(side)
                cost = max(extra, row["transfer"]) if name != "local, temp files" else 0.0
                share = f"{100 * cost / gpu:11.1f}%" if gpu else f"{'-':>12}"
                print(
                    f"{f'{side}x{side}':>10} {name:<18} {row['up'] / 1e6:7.2f} "
                    f"{row['down'] / 1e6:8.2f} {row['start']:8.2f} {row['transfer']:10.3f} "
                    f"{row['job']:7.3f} {extra:8.3f} {share}",
                    flush=True,
                )
    finally:
        sshd.stop_server(server)


if __name__ == "__main__":
    main()
