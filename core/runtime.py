"""ONNX Runtime: which package variant is installed, which device to use, and sessions for it.

Devices: "cpu", "cuda" (onnxruntime-gpu, NVIDIA), "directml" (onnxruntime-directml, Windows GPUs), and
"auto" = the first of cuda, directml, cpu that works here. Forcing a device that can't work raises
DeviceUnavailable with one line naming the cause (package variant, libraries, GPU).
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from types import ModuleType

import numpy as np

from .errors import DeviceUnavailable, ModelError, first_line

# The three distributions all install the same `onnxruntime` module; two at once overwrite each other.
VARIANTS = {"onnxruntime": "cpu", "onnxruntime-gpu": "cuda", "onnxruntime-directml": "directml"}
DEVICES = ("auto", "cpu", "cuda", "directml")
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "directml": "DmlExecutionProvider",
}
EXTRAS = {"cpu": "onnxstyle[cpu]", "cuda": "onnxstyle[cuda]", "directml": "onnxstyle[directml]"}
# Where a device's OrtValues live: (OrtValue device name, device id).
PLACES = {"cpu": ("cpu", 0), "cuda": ("cuda", 0), "directml": ("dml", 0)}


def installed_variants() -> list[str]:
    """Distribution names of the ONNX Runtime variants that are installed."""
    found = []
    for dist in VARIANTS:
        try:
            metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
        found.append(dist)
    return found


@lru_cache(
    maxsize=1
)  # every session and device check asks; the distribution scan is done once (errors aren't cached)
def import_onnxruntime() -> ModuleType:
    """Import onnxruntime, or raise a one-line error naming the extra to install."""
    variants = installed_variants()
    if len(variants) > 1:
        raise DeviceUnavailable(
            f"several ONNX Runtime variants are installed ({', '.join(variants)}); "
            f"keep one: pip uninstall -y {' '.join(variants)} && pip install 'onnxstyle[cpu]' (or [cuda] / [directml])"
        )
    try:
        import onnxruntime  # noqa: PLC0415 (optional until a session is made)
    except ImportError:
        raise DeviceUnavailable(
            "ONNX Runtime is not installed: pip install 'onnxstyle[cpu]' (or [cuda] / [directml])"
        ) from None
    return onnxruntime


def provider_options(device: str) -> dict:
    """Execution-provider options, chosen for this workload (why, per option, below)."""
    if device == "cuda":
        return {
            # every scale and tile size is a new shape: EXHAUSTIVE searches again for each, no faster;
            # DEFAULT is 3x slower (DEVELOPERS.md, facts)
            "cudnn_conv_algo_search": "HEURISTIC",
            # The activations of one image size are allocated once and reused every step; growing
            # the arena by what is requested (not by powers of two) wastes less memory on big images.
            "arena_extend_strategy": "kSameAsRequested",
            # Copies and kernels on the one default stream: no cross-stream sync to reason about when
            # bound inputs are updated between steps (the copies are small next to the convs).
            "do_copy_in_default_stream": "1",
            # TF32 rounds the Grams too: 0.9% gradient error (DEVELOPERS.md); ONNXSTYLE_CUDA_TF32=1 opts in
            "use_tf32": "1" if os.environ.get("ONNXSTYLE_CUDA_TF32") == "1" else "0",
        }
    return {}


def session_options(device: str, threads: int | None = None):
    """SessionOptions: full graph optimisation; DirectML's required settings; CPU thread count."""
    ort = import_onnxruntime()
    opts = ort.SessionOptions()
    # The graphs are static VGG convs: ORT_ENABLE_ALL fuses Conv+ReLU and picks NCHWc layouts on CPU.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only: we report a missing CUDA library, in one line
    if device == "cpu":
        # memory patterns: a third more peak memory at equal speed (DEVELOPERS.md), new shapes anyway
        opts.enable_mem_pattern = False
    if device == "directml":
        # DirectML can't use memory patterns or parallel execution (ORT's DirectML EP documentation).
        opts.enable_mem_pattern = False
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads:
        opts.intra_op_num_threads = int(threads)  # 0/None: ORT's default, one per physical core
    return opts


def _gpu_driver_present() -> bool:
    """Whether an NVIDIA driver library loads (no driver ⇒ no usable NVIDIA GPU)."""
    name = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def _provider_problem(device: str) -> str | None:
    """Why `device` can't work with the installed package (None: it may work; sessions confirm)."""
    ort = import_onnxruntime()
    available = ort.get_available_providers()
    if PROVIDERS[device] in available:
        return None
    if device == "directml" and sys.platform != "win32":
        return "DirectML runs on Windows only; use --device cpu (or cuda with an NVIDIA GPU)"
    variant = [d for d, v in VARIANTS.items() if v == device][0]
    return (
        f"{device} needs the {variant} package, not {', '.join(installed_variants()) or 'none'}: "
        f"pip uninstall -y onnxruntime && pip install '{EXTRAS[device]}'"
    )


def _cuda_failed_reason() -> str:
    if not _gpu_driver_present():
        return (
            "CUDA provider failed to load: no NVIDIA GPU driver found (libcuda); use --device cpu"
        )
    return (
        "CUDA provider failed to load: CUDA/cuDNN 9 libraries not found "
        "(pip install 'onnxstyle[cuda]' brings them, or put them on the library path); use --device cpu"
    )


def resolve_device(device: str = "auto") -> str:
    """The concrete device for a requested one; auto tries cuda, then directml, then cpu."""
    if device not in DEVICES:
        raise DeviceUnavailable(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device != "auto":
        problem = _provider_problem(device)
        if problem:
            raise DeviceUnavailable(problem)
        return device
    for candidate in ("cuda", "directml"):
        if _provider_problem(candidate) is None and (candidate != "cuda" or _gpu_driver_present()):
            return candidate
    return "cpu"


@lru_cache(maxsize=1)
def _preload_cuda_libraries() -> None:
    """Load CUDA/cuDNN from the nvidia-* pip wheels if present (onnxruntime-gpu ≥ 1.21 offers it)."""
    ort = import_onnxruntime()
    if hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()  # default search order: torch's CUDA libraries, nvidia-* wheels, system paths
        except Exception:  # missing wheels: the session check below names the problem
            pass


def make_session(path: Path | str, device: str = "cpu", threads: int | None = None):
    """An InferenceSession for one model file on `device` (cpu/cuda/directml; auto resolves first).

    ORT quietly falls back to the CPU when the CUDA libraries are missing; we check the session's
    providers and raise DeviceUnavailable instead, so a forced GPU never runs silently on the CPU.
    "auto" does fall back to the CPU when the GPU it picked can't start a session.
    """
    if device == "auto":
        picked = resolve_device("auto")
        try:
            return make_session(path, picked, threads)
        except DeviceUnavailable:
            if picked == "cpu":
                raise
            return make_session(path, "cpu", threads)
    ort = import_onnxruntime()
    device = resolve_device(device)
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    if device == "cuda":
        _preload_cuda_libraries()
    providers: list = [PROVIDERS["cpu"]]
    if device != "cpu":
        providers.insert(0, (PROVIDERS[device], provider_options(device)))
    try:
        session = ort.InferenceSession(
            str(path), sess_options=session_options(device, threads), providers=providers
        )
    except Exception as exc:  # ORT raises its own types; the user needs the file and the reason
        first = first_line(exc)
        if device != "cpu" and "model" not in first.lower():
            raise DeviceUnavailable(f"{device} session failed: {first}") from None
        raise ModelError(f"cannot load model {path}: {first}") from None
    if session.get_providers()[0] != PROVIDERS[device]:
        raise DeviceUnavailable(
            _cuda_failed_reason()
            if device == "cuda"
            else f"{device} provider failed to load; use --device cpu"
        )
    return session


def cuda_free_bytes() -> int | None:
    """Free memory of CUDA device 0 (cudaMemGetInfo, from the CUDA runtime ONNX Runtime loaded),
    or None where that library can't be found or asked."""
    names = ("cudart64_13.dll", "cudart64_12.dll") if sys.platform == "win32" else ()
    for name in names or ("libcudart.so.13", "libcudart.so.12"):
        try:
            library = ctypes.CDLL(name)
        except OSError:
            continue
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        if library.cudaMemGetInfo(ctypes.byref(free), ctypes.byref(total)) == 0:
            return free.value
    return None


def available_devices() -> list[dict]:
    """For `onnxstyle info`: each device with whether it can be used here and, if not, why."""
    rows = []
    for device in ("cpu", "cuda", "directml"):
        try:
            problem = _provider_problem(device)
        except DeviceUnavailable as exc:
            problem = str(exc)
        if problem is None and device == "cuda" and not _gpu_driver_present():
            problem = "no NVIDIA GPU driver found (libcuda)"
        rows.append(
            {
                "device": device,
                "provider": PROVIDERS[device],
                "available": problem is None,
                "reason": problem or "",
            }
        )
    return rows


def onnxruntime_version() -> str:
    """The installed onnxruntime module's version, or "" when it is missing."""
    try:
        return import_onnxruntime().__version__
    except DeviceUnavailable:
        return ""


# ------------------------------------------------------------------------------ values on a device


def device_loop(device: str) -> bool:
    """Whether runs on `device` (cpu/cuda/directml) keep the optimiser's state there and update it
    with graphs (core/device_optim.py), rather than in numpy on the host."""
    if device == "cpu":  # no copies to save, and numpy's updates are cheaper (DEVELOPERS.md, facts)
        return False
    # the user's way back to the host path, should a GPU's device loop misbehave (it has not yet
    # been timed on a GPU: DEVELOPERS.md)
    if os.environ.get("ONNXSTYLE_PIXEL_UPDATES") == "host":
        return False
    return device != "directml" or _dml_values_work()


@lru_cache(maxsize=1)
def _dml_values_work() -> bool:
    """Whether this onnxruntime allocates OrtValues on a DirectML device (ORT ≥ ~1.17 builds do)."""
    ort = import_onnxruntime()
    if PROVIDERS["directml"] not in ort.get_available_providers():
        return False
    try:
        ort.OrtValue.ortvalue_from_shape_and_type([1], np.float32, *PLACES["directml"])
    except Exception:  # an older or differently built package: no OrtValues there
        return False
    return True


def pixel_updates(device: str) -> str:
    """For `onnxstyle info`: where a run on `device` computes its pixel updates."""
    if device == "directml" and not _dml_values_work():
        return "host (numpy: this onnxruntime can't allocate OrtValues on DirectML)"
    if device != "cpu" and not device_loop(device):
        return "host (numpy: ONNXSTYLE_PIXEL_UPDATES=host)"
    return "device (ONNX Runtime)" if device_loop(device) else "host (numpy)"


@dataclass
class Transfers:
    """Host↔device copies made through upload/download, counted (the device loop's own accounting:
    tests check that an evaluation moves only scalars)."""

    uploads: int = 0
    upload_bytes: int = 0
    downloads: int = 0
    download_bytes: int = 0
    largest: int = 0  # bytes of the largest single copy

    def count(self, nbytes: int, up: bool) -> None:
        if up:
            self.uploads, self.upload_bytes = self.uploads + 1, self.upload_bytes + nbytes
        else:
            self.downloads, self.download_bytes = self.downloads + 1, self.download_bytes + nbytes
        self.largest = max(self.largest, nbytes)


TRANSFERS = Transfers()  # process-wide; tests and benchmarks read its changes


def empty(shape: tuple[int, ...], place: tuple[str, int], dtype=np.float32):
    """An uninitialised OrtValue on `place` (no copy)."""
    return import_onnxruntime().OrtValue.ortvalue_from_shape_and_type(list(shape), dtype, *place)


def to_device(array: np.ndarray, place: tuple[str, int]):
    """A new OrtValue on `place` holding `array`, of its own dtype (the graphs take float32 and
    int64 inputs; counted; on the CPU it wraps the array, no copy: keep the array alive and
    unchanged while the value is used)."""
    array = np.ascontiguousarray(array)
    TRANSFERS.count(array.nbytes, up=True)
    return import_onnxruntime().OrtValue.ortvalue_from_numpy(array, *place)


def upload(array: np.ndarray, into) -> None:
    """Copy a host array into an OrtValue of the same shape and type (counted in TRANSFERS)."""
    array = np.ascontiguousarray(array)
    into.update_inplace(array)
    TRANSFERS.count(array.nbytes, up=True)


def download(value) -> np.ndarray:
    """An OrtValue's contents as a host array of its own (counted in TRANSFERS)."""
    array = np.array(value.numpy(), copy=True)  # a CPU OrtValue's numpy() is a view of its buffer
    TRANSFERS.count(array.nbytes, up=False)
    return array
