"""Ray for onnxstyle: many pictures (and a big picture's tiles) on many devices, with no scheduler of
our own. Ray is the optional `[cluster]` extra; nothing else in onnxstyle imports it (`stylize` and
the GIMP plug-in never do).

- Connecting (`connect`): `ray.init()` on this machine by default (a local Ray that lives as long as
  the command), or `--ray-address ADDR` / `RAY_ADDRESS` to join a cluster started with `ray start`.
  An address that doesn't answer is one line within CONNECT_BOUND_S (ray.init alone retries for
  minutes): a TCP connect first, then Ray's own connect with its retries bounded.
- Workers (`StyleWorker`): one Ray actor per GPU (`num_gpus=1`), or on CPU nodes one per node using
  its cores; each loads the graphs once and keeps its sessions warm. `max_restarts` and
  `max_task_retries` let Ray bring an actor back and retry its call when a node dies.
- The loop (`Session.run`): each idle worker gets the next picture, `ray.wait` for whichever
  finishes. Pixels go to the workers and back through Ray's object store; the style targets are
  computed once per working size on the workers and `ray.put` by this process, so they outlive any
  worker node. A picture whose worker's node died (its call failed although Ray retried it) goes
  back to the queue for another worker: it is redone, and only its first result counts, so it is
  never written twice (this process writes the results: the caller's business).
- Cancelling: a worker polls its own cancel flag before every engine step; `cancel()` runs in a
  separate concurrency group, so it is heard while a picture runs.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onnxstyle.core.engine import Progress, StyleOptions, stylize
from onnxstyle.core.errors import Cancelled, StyleError, first_line
from onnxstyle.core.graph import StyleGraph
from onnxstyle.core.options import check_options
from onnxstyle.core.scale import blended_grams
from onnxstyle.core.tiled import DEFAULT_TILE_MPX, TileMap, TileTask, optimise_tile

INSTALL_HINT = "pip install 'onnxstyle[cluster]' (or: pip install ray)"
CONNECT_BOUND_S = 30  # an unreachable address is reported within this
TCP_CONNECT_S = 5.0
MAX_RESTARTS = 3  # Ray restarts a worker whose node died this often (where resources allow)
MAX_TASK_RETRIES = 2  # and retries its call
NO_WORKER_S = 120.0  # every worker lost for this long: the rest of the batch fails
STATUS_EVERY_S = 0.5


def import_ray():
    """The ray module, or one line saying what to install."""
    try:
        import ray  # noqa: PLC0415 (optional: the [cluster] extra)
    except ImportError:
        raise StyleError(f"this needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def ray_address(given: str | None) -> str | None:
    """The cluster to join: --ray-address, else RAY_ADDRESS, else None (a local Ray)."""
    address = given or os.environ.get("RAY_ADDRESS") or None
    return None if address in (None, "local") else address


def _check_reachable(address: str) -> None:
    """A TCP connect to the head's GCS port: a dead or filtered address answers in seconds here,
    where ray.init would retry for minutes."""
    host, _, port = address.rpartition(":")
    if address.startswith("ray://"):
        raise StyleError(
            f"--ray-address {address}: give the head's host:port (Ray Client is not supported)"
        )
    try:
        number = int(port)
    except ValueError:
        raise StyleError(f"--ray-address {address}: expected host:port") from None
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", number), TCP_CONNECT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise StyleError(
            f"can't reach the Ray cluster at {address} ({reason.lower()}); is 'ray start --head' "
            "running there?"
        ) from None


def _bound_ray_connect() -> None:
    """Before ray is imported: one connect attempt of a few seconds instead of 20 of 30 s each
    (Ray reads these from the environment; a user's own settings win)."""
    for name, value in (
        ("RAY_NUM_REDIS_GET_RETRIES", "1"),
        ("RAY_py_gcs_connect_timeout_s", "8"),
        ("RAY_gcs_rpc_server_connect_timeout_s", "4"),
    ):
        os.environ.setdefault(name, value)


@dataclass(frozen=True)
class Placement:
    """Where one worker goes: a node, its share of the node, and its slot among the node's workers."""

    node_id: str
    num_cpus: float
    num_gpus: int
    slot: int
    slots: int


def plan_workers(nodes: Sequence[dict], device: str, count: int | None) -> list[Placement]:
    """One worker per GPU when the cluster has GPUs (and the device isn't the CPU); else one per node
    using its cores. `count` workers instead, spread over the nodes (CPU nodes split their cores)."""
    alive = [n for n in nodes if n.get("Alive")]
    gpus = {n["NodeID"]: int(n["Resources"].get("GPU", 0)) for n in alive}
    if device != "cpu" and sum(gpus.values()) > 0:
        slots = [(node, 1) for node, k in gpus.items() for _ in range(k)]
        if count is not None:
            slots = slots[:count]
        return [Placement(node, 0, 1, 0, 1) for node, _ in slots]
    cpus = {n["NodeID"]: float(n["Resources"].get("CPU", 0)) for n in alive}
    cpu_nodes = [node for node, k in cpus.items() if k > 0]
    if not cpu_nodes:
        raise StyleError("the Ray cluster has no node with a CPU or a GPU to work on")
    per_node = {node: 0 for node in cpu_nodes}
    for i in range(count or len(cpu_nodes)):
        per_node[cpu_nodes[i % len(cpu_nodes)]] += 1
    plan = []
    for node, k in per_node.items():
        share = cpus[node] / k if k else 0
        share = float(int(share)) if share >= 1 else round(share, 2)  # Ray: whole numbers above 1
        plan += [Placement(node, share, 0, slot, k) for slot in range(k)]
    return plan


def _pin(slot: int, slots: int) -> None:
    """A node split between `slots` workers: this one keeps its share of the cores, so ONNX Runtime
    (which sizes its thread pool to the process's affinity) doesn't fight its neighbours."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if slots > 1 and len(cores) >= slots:
        share = len(cores) // slots
        os.sched_setaffinity(0, cores[slot * share : (slot + 1) * share])


def _style_targets(
    graph, styles: list[np.ndarray], blend: np.ndarray, longer: int, budget_px: int
) -> dict[str, np.ndarray]:
    """The blended Gram targets for a scale whose style side is `longer` (engine.style_side)."""
    return blended_grams(graph, styles, blend, longer, budget_px)


class StyleWorker:
    """A Ray actor (made with ray.remote in `Session.start_workers`): the graphs loaded once."""

    def __init__(self, pooling: str, device: str, model_dir: str | None, slot: int, slots: int):
        _pin(slot, slots)
        self.graph = StyleGraph.load(pooling, device, model_dir)
        self._cancel = False
        self._status: tuple | None = None
        self._frames_run = ""  # the clip whose style Grams _frames_grams holds
        self._frames_grams: dict = {}

    def where(self) -> tuple[str, str]:
        """(node id, node address) of this worker."""
        import ray  # noqa: PLC0415 (optional: runs inside a Ray worker)

        return ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address()

    def targets(self, styles: list[np.ndarray], blend, longer: int, budget_px: int) -> dict:
        return _style_targets(self.graph, styles, np.asarray(blend), longer, budget_px)

    def stylize(
        self,
        name: str,
        content: np.ndarray,
        options: StyleOptions,
        styles: list[np.ndarray],
        longers: Sequence[int],
        *grams: dict,
    ) -> tuple[np.ndarray, float, str, str]:
        """One picture: (result, seconds, node id, node address). With `longers` the style targets
        come precomputed (one dict per style side), else the engine computes them from `styles`."""
        started = time.monotonic()
        shared = dict(zip(longers, grams))

        def progress(p: Progress) -> None:
            self._status = (name, p.scale, p.scales, p.step, p.steps)

        try:
            result = stylize(
                content,
                styles,
                options,
                progress=progress,
                cancel=lambda: self._cancel,
                graph=self.graph,
                style_grams=shared.__getitem__ if shared else None,
            )
        finally:
            self._status = None
        return (result, time.monotonic() - started, *self.where())

    def tile(self, task: TileTask) -> tuple[np.ndarray, float, str, str]:
        """One tile of a big picture's scale (core/tiled.py): (tile, seconds, node id, address)."""
        started = time.monotonic()

        def progress(step: int, loss: float) -> None:
            self._status = (f"tile {task.index}", 1, 1, step, task.options.steps)

        try:
            result = optimise_tile(self.graph, task, progress, lambda: self._cancel)
        finally:
            self._status = None
        return (result, time.monotonic() - started, *self.where())

    def frames(
        self,
        name: str,
        contents: list[np.ndarray],
        options: StyleOptions,
        styles: list[np.ndarray],
        temporal_weight: float,
        resume: tuple[np.ndarray, np.ndarray] | None,
        first: int,
        run: str,
    ) -> tuple[list[np.ndarray], float, str, str]:
        """One chunk of a clip (plugin/cluster_frames.py): a fresh FrameSequence over `contents`
        (frames `first`.., at the work size), or one going on from `resume` (the content and result
        of frame first−1). (results, seconds, node id, address)."""
        from onnxstyle.core.frames import FrameSequence  # noqa: PLC0415 (needs OpenCV: frames only)

        started = time.monotonic()
        if run != self._frames_run:  # the style Grams: once per actor for a clip
            self._frames_run, self._frames_grams = run, {}
        sequence = FrameSequence(
            styles, options, temporal_weight, graph=self.graph, grams=self._frames_grams
        )
        if resume is not None:
            sequence.resume(*resume, first)

        def progress(p: Progress) -> None:
            self._status = (name, p.scale, p.scales, p.step, p.steps)

        try:
            results = [sequence.next(c, progress, lambda: self._cancel) for c in contents]
        finally:
            self._status = None
        return (results, time.monotonic() - started, *self.where())

    # the "control" concurrency group: answered while stylize runs

    def cancel(self) -> None:
        self._cancel = True

    def status(self) -> tuple | None:
        """(picture, scale, scales, step, steps) of the picture running, or None."""
        return self._status


@dataclass
class Job:
    """One picture, tile or chunk of a clip: `load` gives what the worker is sent (a picture's RGB
    at the working size, or raises StyleError; a tile's TileTask; a chunk's frames), `longers` the
    style sides of a picture's scales (the targets it needs; none for a tile or a chunk)."""

    name: str
    load: Callable[[], np.ndarray | TileTask | list[np.ndarray]]
    longers: tuple[int, ...]
    redone: int = 0


@dataclass
class Done:
    job: Job
    result: np.ndarray
    seconds: float
    node: str


@dataclass
class Failed:
    job: Job
    message: str


@dataclass
class Status:
    """What runs now: per worker (picture, scale, scales, step, steps)."""

    running: list[tuple]
    workers: int


@dataclass(eq=False)
class _Worker:
    handle: Any
    node: str = ""
    probe: Any = None  # an ObjectRef of where(), while the worker is being brought back
    probed_at: float = 0.0


@dataclass
class Session:
    """A connected Ray: start the workers, share the targets, run the pictures."""

    ray: Any
    address: str | None
    workers: list[_Worker] = field(default_factory=list)
    targets: dict[int, Any] = field(default_factory=dict)
    lost: int = 0  # calls that failed because their worker's node died (each redone)
    tile_nodes: dict[int, str] = field(default_factory=dict)  # the node that made each tile, last

    def start_workers(self, options: StyleOptions, count: int | None = None) -> None:
        """The actors, placed by plan_workers; returns when each has loaded its graphs."""
        ray = self.ray
        from ray.util.scheduling_strategies import (  # noqa: PLC0415 (optional: the [cluster] extra)
            NodeAffinitySchedulingStrategy,
        )

        actor = ray.remote(
            max_restarts=MAX_RESTARTS,
            max_task_retries=MAX_TASK_RETRIES,
            concurrency_groups={"control": 1},
        )(StyleWorker)
        for place in plan_workers(ray.nodes(), options.device, count):
            handle = actor.options(
                num_cpus=place.num_cpus,
                num_gpus=place.num_gpus,
                # soft: a restarted worker may go to another node
                scheduling_strategy=NodeAffinitySchedulingStrategy(place.node_id, soft=True),
            ).remote(options.pooling, options.device, options.model_dir, place.slot, place.slots)
            self.workers.append(_Worker(handle))
        for worker, node in zip(
            self.workers, self._get([w.handle.where.remote() for w in self.workers])
        ):
            worker.node = _shown_node(*node)

    def _get(self, refs):
        """ray.get, a worker's own error (a missing model, an unusable device) as one line."""
        try:
            return self.ray.get(refs)
        except self.ray.exceptions.RayTaskError as exc:
            raise _cause(exc) from None

    def share_targets(
        self, styles_ref, options: StyleOptions, n_styles: int, longers: Iterable[int]
    ) -> None:
        """The style targets for every style side the pictures need: computed once each, spread
        over the workers, then ray.put here (owned by this process, they outlive any worker)."""
        blend = check_options(options, n_styles)
        budget_px = int((options.tile_budget_mpx or DEFAULT_TILE_MPX) * 1e6)
        longers = sorted(set(longers))
        refs = [
            self.workers[i % len(self.workers)].handle.targets.remote(
                styles_ref, blend, longer, budget_px
            )
            for i, longer in enumerate(longers)
        ]
        for longer, grams in zip(longers, self._get(refs)):
            self.targets[longer] = self.ray.put(grams)

    def stylize_call(self, options_ref, styles_ref) -> Callable:
        """How a picture goes to a worker: its pixels, the shared options and styles, and the
        targets its scales need (refs: Ray hands the worker the objects)."""

        def submit(worker: _Worker, job: Job, content: np.ndarray):
            longers = job.longers if self.targets else ()
            grams = [self.targets[k] for k in longers]
            return worker.handle.stylize.remote(
                job.name, content, options_ref, styles_ref, longers, *grams
            )

        return submit

    def run(
        self,
        jobs: Iterable[Job],
        submit: Callable[[_Worker, Job, Any], Any],
        cancelled: Callable[[], bool],
        admit: Callable[[Job], bool] | None = None,
    ) -> Iterator[Done | Failed | Status]:
        """Run every job; yields each Done or Failed as it comes, and a Status twice a second.
        Returns when every job is done or failed, or when `cancelled()` (the workers are told to
        stop; calls already finished still come back as Done). With `admit`, the next job waits
        while admit(job) is false (a clip's chunks: the driver's memory stays bounded); it must be
        true for the next job whenever none runs."""
        ray = self.ray
        queue: deque[Job] = deque(jobs)
        idle = deque(self.workers)
        running: dict[Any, tuple[_Worker, Job]] = {}
        status: dict[Any, _Worker] = {}
        shown: dict[int, tuple] = {}
        last_status = 0.0
        none_since: float | None = None
        while queue or running:
            if cancelled():
                yield from self._stop(running)
                return
            while idle and queue and (admit is None or admit(queue[0])):
                worker, job = idle.popleft(), queue.popleft()
                try:
                    content = job.load()
                except StyleError as exc:
                    yield Failed(job, str(exc))
                    idle.appendleft(worker)
                    continue
                running[submit(worker, job, content)] = (worker, job)
            self._probe_lost(idle)
            if not running:
                # every worker is being brought back (or gone): wait for one, within a bound
                none_since = none_since or time.monotonic()
                if time.monotonic() - none_since > NO_WORKER_S or not any(
                    w.probe is not None for w in self.workers
                ):
                    for job in queue:
                        yield Failed(job, "no Ray worker left (their nodes died)")
                    return
                time.sleep(0.5)
                continue
            none_since = None
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.25)
            for ref in ready:
                worker, job = running.pop(ref)
                outcome = self._outcome(ref, worker, job)
                if outcome is None:  # the worker's node died: redo the picture elsewhere
                    self.lost += 1
                    job.redone += 1
                    queue.appendleft(job)
                    worker.probe, worker.probed_at = worker.handle.where.remote(), time.monotonic()
                    continue
                idle.append(worker)
                shown.pop(id(worker), None)
                yield outcome
            if time.monotonic() - last_status >= STATUS_EVERY_S:
                last_status = time.monotonic()
                done, _ = (
                    ray.wait(list(status), num_returns=len(status), timeout=0)
                    if status
                    else ([], [])
                )
                for ref in done:
                    worker = status.pop(ref)
                    try:
                        shown[id(worker)] = ray.get(ref)
                    except Exception:  # a worker going away: its next call says so
                        shown.pop(id(worker), None)
                busy = {id(w): j.name for w, j in running.values()}
                for worker, _ in running.values():
                    if worker not in status.values():
                        status[
                            worker.handle.status.options(concurrency_group="control").remote()
                        ] = worker
                yield Status(
                    [s for key, s in shown.items() if s and busy.get(key) == s[0]],
                    len(self.workers),
                )

    def _outcome(self, ref, worker: _Worker, job: Job) -> Done | Failed | None:
        """A finished call as Done or Failed; None when its worker (node) was lost."""
        ray = self.ray
        try:
            result, seconds, node_id, address = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = _cause(exc)
            if isinstance(cause, Cancelled):
                return Failed(job, "cancelled")
            return Failed(job, str(cause))
        except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError):
            return None
        worker.node = _shown_node(node_id, address)
        return Done(job, result, seconds, worker.node)

    def _probe_lost(self, idle: deque) -> None:
        """Workers whose node died: back to work once Ray has restarted them (where() answers);
        asked again every few seconds; dropped when Ray gives up on them."""
        ray = self.ray
        for worker in self.workers:
            if worker.probe is None:
                continue
            ready, _ = ray.wait([worker.probe], timeout=0)
            if not ready:
                continue
            try:
                worker.node = _shown_node(*ray.get(worker.probe))
            except ray.exceptions.ActorDiedError:
                worker.probe = None  # gone for good (restarts used up)
                continue
            except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError):
                if time.monotonic() - worker.probed_at > 2:
                    worker.probe, worker.probed_at = worker.handle.where.remote(), time.monotonic()
                continue
            worker.probe = None
            idle.append(worker)

    def _stop(self, running: dict) -> Iterator[Done | Failed]:
        """Cancel: every worker stops at its next engine step; what finished meanwhile is kept."""
        ray = self.ray
        for worker in self.workers:
            worker.handle.cancel.options(concurrency_group="control").remote()
        ready, _ = (
            ray.wait(list(running), num_returns=len(running), timeout=30) if running else ([], [])
        )
        for ref in ready:
            worker, job = running.pop(ref)
            outcome = self._outcome(ref, worker, job)
            if isinstance(outcome, Done):
                yield outcome

    def tile_map(self, cancelled: Callable[[], bool]) -> TileMap:
        """stylize's tile seam: a scale's TileTasks spread over the workers, the results in task
        order (the blend and the next scale's start stay in the caller, core/tiled.py)."""

        def submit(worker: _Worker, job: Job, task: TileTask):
            return worker.handle.tile.remote(task)

        def run_tiles(tasks: Sequence[TileTask]) -> list[np.ndarray]:
            jobs = [Job(str(t.index), (lambda t=t: t), ()) for t in tasks]
            results: dict[str, np.ndarray] = {}
            for event in self.run(jobs, submit, cancelled):
                if isinstance(event, Done):
                    results[event.job.name] = event.result
                    self.tile_nodes[int(event.job.name)] = event.node
                elif isinstance(event, Failed):
                    if event.message == "cancelled":
                        raise Cancelled()
                    raise StyleError(f"tile {event.job.name}: {event.message}")
            if cancelled():
                raise Cancelled()
            return [results[str(t.index)] for t in tasks]

        return run_tiles


def _shown_node(node_id: str, address: str) -> str:
    """A node as the summary names it: its address and the start of its Ray id (two nodes on one
    machine share the address)."""
    return f"{address} ({node_id[:8]})"


def _cause(exc: Exception) -> Exception:
    """The worker's own exception inside Ray's wrapper, as a one-line error."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, (StyleError, Cancelled)):
        return cause
    if cause is not None:
        text = first_line(cause) if str(cause).strip() else ""
        return StyleError(
            f"unexpected {type(cause).__name__} on a Ray worker{': ' + text if text else ''}"
        )
    return StyleError(f"Ray: {first_line(exc)}")


@contextmanager
def _stderr_aside() -> Iterator[None]:
    """Ray's C++ client logs each failed connect attempt to file descriptor 2; while joining, those
    lines go to a scratch file (a failure is our one line)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as scratch:
            os.dup2(scratch.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


@contextmanager
def connect(address: str | None) -> Iterator[Session]:
    """Ray for the command: a local Ray (started here, stopped on exit) without an address, else
    the cluster at `address` (joined, left on exit; our workers end with us)."""
    if address is not None:
        _check_reachable(address)
        if "ray" not in sys.modules:
            _bound_ray_connect()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reports home from a local Ray
    ray = import_ray()
    import logging  # noqa: PLC0415 (only here: Ray's own loggers)

    started = time.monotonic()
    try:
        with _stderr_aside() if address is not None else nullcontext():
            ray.init(
                address=address or "local",
                include_dashboard=False if address is None else None,
                log_to_driver=False,
                logging_level=logging.ERROR,
                configure_logging=True,
            )
    except KeyboardInterrupt:  # Ctrl-C while Ray starts: stop what it started
        ray.shutdown()
        raise
    except Exception as exc:  # ConnectionError, AuthenticationError, RuntimeError ...: one line
        ray.shutdown()
        took = time.monotonic() - started
        where = f"at {address}" if address else "on this machine"
        raise StyleError(
            f"can't connect to the Ray cluster {where} after {took:.0f} s ({first_line(exc)})"
        ) from None
    try:
        yield Session(ray, address)
    finally:
        ray.shutdown()


@contextmanager
def distributed_tiles(
    address: str | None, options: StyleOptions, cancelled: Callable[[], bool]
) -> Iterator[TileMap]:
    """`stylize --ray-address/--distribute`: a tile map over the workers of a local Ray or of the
    cluster at `address`. The scales too small to tile run in the calling process, as without Ray."""
    with connect(address) as session:
        session.start_workers(options)
        yield session.tile_map(cancelled)
