"""`onnxstyle batch` on a real Ray: a real two-node cluster on this machine (a head and a second
node, `ray start` on their own ports, one CPU each, a temporary folder of our own), real workers and
sessions, tiny pictures, a few steps.

The cluster is started once for the module; the test that kills its second node runs last. Every
Ray process the tests started is found by its temporary folder and ended at teardown, and the
Ctrl-C test checks that a local Ray leaves no process behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onnxstyle.core.engine import StyleOptions, stylize
from onnxstyle.core.errors import StyleError
from onnxstyle.core.tiled import tiles_for
from onnxstyle.plugin import cluster as cluster_module
from onnxstyle.plugin.commands import batch

ray = pytest.importorskip("ray", reason="Ray is not installed (the [cluster] or dev extra)")

BIN = Path(sys.executable).parent
ONNXSTYLE = [str(BIN / "onnxstyle")]
RAY = str(BIN / "ray")
STYLE = str(Path(__file__).resolve().parent.parent / "examples" / "swirls.jpg")
FAST = ["--preset", "draft", "--steps", "6", "--max-size", "48"]
RNG = np.random.default_rng(16)
# Ray 2.60 turns token authentication on for a new local Ray and for `ray start --head` once a token
# exists in ~/.ray (a local Ray writes one); the test cluster and its drivers run without it.
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def picture(height: int, width: int) -> np.ndarray:
    """A photo-like uint8 RGB picture (smoothed noise)."""
    noise = RNG.random((height // 4 + 2, width // 4 + 2, 3))
    big = np.kron(noise, np.ones((4, 4, 1)))[:height, :width]
    return (big * 255).astype(np.uint8)


def make_inputs(folder: Path, count: int = 6, side: int = 40) -> dict[str, str]:
    """`count` pictures of mixed sizes and modes; returns {name: Pillow mode written}."""
    folder.mkdir(parents=True, exist_ok=True)
    kinds = [
        ("rgb.jpg", "RGB"),
        ("grey.png", "L"),
        ("alpha.png", "RGBA"),
        ("deep.png", "I;16"),
        ("wide.png", "RGB"),
        ("tall.webp", "RGB"),
        ("more.jpg", "RGB"),
        ("extra.png", "RGB"),
    ]
    modes = {}
    for i, (name, mode) in enumerate(kinds[:count]):
        h, w = side + 4 * (i % 3), side + 8 * (i % 2)
        rgb = Image.fromarray(picture(h, w))
        if mode == "L":
            image = rgb.convert("L")
        elif mode == "RGBA":
            image = rgb.convert("RGBA")
            image.putalpha(Image.linear_gradient("L").resize(image.size))
        elif mode == "I;16":
            image = Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257)
        else:
            image = rgb
        image.save(folder / name)
        modes[name] = image.mode
    return modes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_of(marker: str) -> list[int]:
    """PIDs whose command line or environment names `marker` (a Ray temporary folder), and their
    descendants."""
    found, parents = set(), {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry}/stat") as f:
                parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    environ = f.read()
            except PermissionError:
                environ = b""
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if marker.encode() in cmdline or marker.encode() in environ:
            found.add(int(entry))
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in found} - found
        grew, found = bool(children), found | children
    return sorted(found)


def kill_all(marker: str) -> None:
    for pid in processes_of(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@dataclass
class Cluster:
    address: str
    temp: str

    def second_raylet(self) -> int:
        """The PID of the second node's raylet (the one started with the "second" resource)."""
        for pid in processes_of(self.temp):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    args = f.read().split(b"\0")
            except FileNotFoundError:
                continue
            if args[0].endswith(b"/raylet") and any(b"second" in a for a in args):
                return pid
        raise AssertionError("no raylet of the second node")


@pytest.fixture(scope="module")
def cluster():
    """A head and a second node on this machine, one CPU each."""
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must stay short
    port = free_port()
    common = [
        "--node-ip-address",
        "127.0.0.1",
        "--num-cpus",
        "1",
        "--object-store-memory",
        "100000000",
        "--temp-dir",
        temp,
        "--disable-usage-stats",
    ]
    try:
        head = [RAY, "start", "--head", "--port", str(port), "--include-dashboard=false"]
        subprocess.run(
            [*head, *common, "--resources", '{"head": 1}'],
            env=ENV,
            check=True,
            capture_output=True,
            timeout=180,
        )
        second = [RAY, "start", "--address", f"127.0.0.1:{port}"]
        subprocess.run(
            [*second, *common, "--resources", '{"second": 1}'],
            env=ENV,
            check=True,
            capture_output=True,
            timeout=180,
        )
        yield Cluster(f"127.0.0.1:{port}", temp)
    finally:
        kill_all(temp)
        shutil.rmtree(temp, ignore_errors=True)


def run_batch(args: list[str], timeout: float = 240, env: dict | None = None):
    return subprocess.run(
        [*ONNXSTYLE, "batch", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or ENV,
    )


def summary_rows(stdout: str) -> dict[str, list[str]]:
    """The summary table as {picture name: [result, time, node ...]}."""
    rows = {}
    for line in stdout.splitlines()[1:]:
        cells = line.split()
        if cells and "/" in cells[0]:
            rows[Path(cells[0]).name] = cells[1:]
    return rows


def assert_results(out: Path, modes: dict[str, str]) -> None:
    """Every result whole, in its input's mode; no temporary file left."""
    assert sorted(p.name for p in out.iterdir()) == sorted(modes)
    for name, mode in modes.items():
        with Image.open(out / name) as im:
            im.load()  # a cut file fails here
            assert im.mode == mode, name


# ------------------------------------------------------------------------ refused before any work


def test_output_folder_inside_an_input_folder_is_refused_before_any_work(tmp_path):
    make_inputs(tmp_path / "in", 2)
    started = time.monotonic()
    result = run_batch([str(tmp_path / "in"), "-s", STYLE, "-o", str(tmp_path / "in" / "out")])
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "inside the input folder" in result.stderr
    assert not (tmp_path / "in" / "out").exists()
    assert time.monotonic() - started < 20  # no Ray was started


def test_a_glob_that_would_read_the_results_again_is_refused(tmp_path):
    make_inputs(tmp_path / "in", 3)
    with pytest.raises(StyleError, match="read again"):
        batch.plan([str(tmp_path / "in" / "*.png")], tmp_path / "in", None)
    with pytest.raises(StyleError, match="read again"):
        batch.plan([str(tmp_path / "**" / "*.png")], tmp_path / "in" / "out", None)
    # a folder below the glob's level is not read by it: allowed
    pictures = batch.plan([str(tmp_path / "in" / "*.png")], tmp_path / "in" / "out", "jpg")
    assert sorted(p.output.name for p in pictures) == ["alpha.jpg", "grey.jpg"]


def test_an_unreachable_address_is_one_line_naming_it(tmp_path):
    make_inputs(tmp_path / "in", 1)
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = run_batch(
        [str(tmp_path / "in"), "-s", STYLE, "-o", str(tmp_path / "out"), "--ray-address", address],
        timeout=60,
    )
    assert time.monotonic() - started < 30
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and address in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_without_ray_batch_says_what_to_install(tmp_path):
    make_inputs(tmp_path / "in", 1)
    code = (
        "import sys; sys.modules['ray'] = None\n"  # `import ray` now fails as if not installed
        "from onnxstyle.plugin.cli import main\n"
        f"sys.exit(main(['batch', {str(tmp_path / 'in')!r}, '-s', {STYLE!r}, '-o', "
        f"{str(tmp_path / 'out')!r}]))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "pip install" in result.stderr, result.stderr


def test_stylize_and_the_worker_never_import_ray(tmp_path):
    Image.fromarray(picture(32, 32)).save(tmp_path / "c.png")
    code = (
        "import sys\n"
        "from onnxstyle.plugin.cli import main\n"
        "import onnxstyle.plugin.worker\n"
        f"code = main(['stylize', {str(tmp_path / 'c.png')!r}, {STYLE!r}, '-o', "
        f"{str(tmp_path / 'r.png')!r}, '--steps', '1', '--max-size', '32', '-q'])\n"
        "assert code == 0, code\n"
        "assert 'ray' not in sys.modules, 'stylize imported ray'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "r.png").is_file()


# ------------------------------------------------------------------------------- on a local Ray


def test_ctrl_c_stops_keeps_finished_results_and_leaves_no_ray_process(tmp_path):
    make_inputs(tmp_path / "in", 8)
    out = tmp_path / "out"
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    env = {**ENV, "RAY_TMPDIR": temp}
    env.pop("RAY_ADDRESS", None)
    args = [str(tmp_path / "in"), "-s", STYLE, "-o", str(out), "--preset", "draft"]
    args += ["--steps", "20", "--max-size", "48", "-q"]
    process = subprocess.Popen(
        [*ONNXSTYLE, "batch", *args], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 180

        def finished() -> list[Path]:  # whole results: write_atomic's ".<name>.*.part" is not one
            return [p for p in out.iterdir() if not p.name.startswith(".")] if out.is_dir() else []

        while not finished() and time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.2)
        assert finished(), "no result within the time"
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
        stderr = process.stderr.read()
        assert code == 130, stderr
        assert "cancelled" in stderr
        kept = sorted(p.name for p in out.iterdir())
        assert kept and len(kept) < 8  # the finished ones, not the rest
        assert not [n for n in kept if n.startswith(".")]  # no partial file
        for name in kept:
            with Image.open(out / name) as im:
                im.load()
        time.sleep(2)  # Ray's processes are ended by ray.shutdown; give the kernel a moment
        assert processes_of(temp) == [], "Ray processes left behind"
    finally:
        if process.poll() is None:
            process.kill()
        kill_all(temp)
        shutil.rmtree(temp, ignore_errors=True)


# ------------------------------------------------------------------- on a two-node Ray cluster


def test_batch_runs_on_both_nodes_keeps_modes_and_resumes(cluster, tmp_path):
    modes = make_inputs(tmp_path / "in", 6)
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out"
    args = [str(tmp_path / "in"), "-s", STYLE, "-o", str(out), *FAST]
    result = run_batch([*args, "--ray-address", cluster.address])
    assert result.returncode == 2, result.stderr  # the bad file: one line, the rest finish
    assert_results(out, modes)
    rows = summary_rows(result.stdout)
    assert rows.pop("broken.png")[0] == "failed"
    assert sorted(rows) == sorted(modes) and all(r[0] == "done" for r in rows.values())
    nodes = {" ".join(r[2:4]) for r in rows.values()}
    assert len(nodes) == 2, result.stdout  # both nodes made pictures
    assert "6 done, 0 skipped, 1 failed" in result.stdout

    # a rerun makes only what is missing: a deleted result, not a stale temporary file's
    (out / "grey.png").unlink()
    (out / ".grey.png.abc123.part").write_bytes(b"half")
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != "grey.png"}
    again = run_batch([*args, "--ray-address", cluster.address])
    assert again.returncode == 2, again.stderr
    assert "1 done, 5 skipped, 1 failed" in again.stdout, again.stdout
    for name, mtime in before.items():
        assert (out / name).stat().st_mtime_ns == mtime, f"{name} was written again"
    (out / ".grey.png.abc123.part").unlink()
    assert_results(out, modes)


def test_a_tiled_picture_through_ray_equals_the_local_tiled_result(cluster, monkeypatch):
    """stylize's tile seam on the cluster: a 96 px picture in 2x2 tiles of 64 px, the tiles spread
    over both nodes' workers, against the same run in this process."""
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    content = picture(96, 96).astype(np.float32) / 255
    style = picture(64, 64)[:, ::-1].astype(np.float32) / 255
    options = StyleOptions.from_preset("draft", steps=8, max_size=96, tile_budget_mpx=0.004)
    assert len(tiles_for(96, 96, options)) == 4
    local = stylize(content, [style], options)
    with cluster_module.connect(cluster.address) as session:
        session.start_workers(options)
        assert len(session.workers) == 2
        distributed = stylize(content, [style], options, tile_map=session.tile_map(lambda: False))
        assert len(set(session.tile_nodes.values())) == 2  # both nodes made tiles
    np.testing.assert_allclose(distributed, local, atol=1e-5)


def test_a_node_killed_mid_batch_loses_no_picture_and_writes_none_twice(cluster, tmp_path):
    """Runs last: it ends the cluster's second node."""
    modes = make_inputs(tmp_path / "in", 6)
    out = tmp_path / "out"
    args = [str(tmp_path / "in"), "-s", STYLE, "-o", str(out), "--preset", "draft"]
    args += ["--steps", "16", "--max-size", "48", "--ray-address", cluster.address]
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    with open(stdout, "w") as o, open(stderr, "w") as e:
        process = subprocess.Popen(
            [*ONNXSTYLE, "batch", *args], env=ENV, stdout=o, stderr=e, text=True
        )
    try:
        deadline = time.monotonic() + 180
        while not (out.is_dir() and any(out.iterdir())) and time.monotonic() < deadline:
            assert process.poll() is None, stderr.read_text()
            time.sleep(0.1)
        os.kill(cluster.second_raylet(), signal.SIGKILL)  # both workers were busy: one is lost
        code = process.wait(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0, stderr.read_text()
    assert "redone after their worker's node was lost" in stderr.read_text()
    assert_results(out, modes)
    rows = summary_rows(stdout.read_text())  # each picture once, made once
    assert sorted(rows) == sorted(modes) and all(r[0] == "done" for r in rows.values())
    assert "6 done, 0 skipped, 0 failed" in stdout.read_text()
    assert any("redone" in " ".join(r) for r in rows.values())
