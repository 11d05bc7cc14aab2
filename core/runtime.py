"""ONNX Runtime: which package variant is installed, which device to use, and sessions for it.

Devices: "cpu", "cuda" (onnxruntime-gpu, NVIDIA), "directml" (onnxruntime-directml, Windows GPUs),
"webgpu" (the onnxruntime-ep-webgpu plug-in: Vulkan on Linux, D3D12 on Windows, Metal on macOS; any
GPU vendor), "coreml" (Apple's Core ML, in the macOS onnxruntime wheel), and "auto" = the first of
AUTO_ORDER that works here, else the CPU. Forcing a device that can't work raises DeviceUnavailable
with one line naming the cause (package variant, libraries, GPU).
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
DEVICES = ("auto", "cpu", "cuda", "directml", "webgpu", "coreml")
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "directml": "DmlExecutionProvider",
    "webgpu": "WebGpuExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}
EXTRAS = {
    "cpu": "onnxstyle[cpu]",
    "cuda": "onnxstyle[cuda]",
    "directml": "onnxstyle[directml]",
    "webgpu": "onnxstyle[webgpu]",
    "coreml": "onnxstyle[cpu]",  # the macOS onnxruntime wheel carries the Core ML provider
}
# Where a device's OrtValues live: (OrtValue device name, device id). Core ML runs keep the optimiser
# on the host (device_loop): its place is only nominal.
PLACES = {
    "cpu": ("cpu", 0),
    "cuda": ("cuda", 0),
    "directml": ("dml", 0),
    "webgpu": ("webgpu", 0),
    "coreml": ("cpu", 0),
}
# auto's order. WebGPU before Core ML: it is there only if the user installed the [webgpu] extra (a
# choice), it takes every op of the VGG graphs (docs/decisions/webgpu-ep.md), and Core ML's cover of
# them with dynamic image sizes is unknown. Neither has been measured on a Mac.
AUTO_ORDER = ("cuda", "directml", "webgpu", "coreml")


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
            # DEFAULT is 3x slower (docs/decisions/session-settings.md)
            "cudnn_conv_algo_search": "HEURISTIC",
            # The activations of one image size are allocated once and reused every step; growing
            # the arena by what is requested (not by powers of two) wastes less memory on big images.
            "arena_extend_strategy": "kSameAsRequested",
            # Copies and kernels on the one default stream: no cross-stream sync to reason about when
            # bound inputs are updated between steps (the copies are small next to the convs).
            "do_copy_in_default_stream": "1",
            # TF32 rounds the Grams too: 0.9% gradient error (docs/decisions/session-settings.md); ONNXSTYLE_CUDA_TF32=1 opts in
            "use_tf32": "1" if os.environ.get("ONNXSTYLE_CUDA_TF32") == "1" else "0",
        }
    if device == "coreml":  # option keys of ORT's coreml_options.cc (1.20+); not yet run on a Mac
        return {
            # ML Program computes in float32 on the GPU; the older NeuralNetwork format in float16
            "ModelFormat": "MLProgram",
            # not ALL: the Neural Engine computes in float16 only, and the gradient needs float32
            # (TF32's 10-bit mantissa already cost 0.9% on CUDA: docs/decisions/session-settings.md)
            "MLComputeUnits": "CPUAndGPU",
            "AllowLowPrecisionAccumulationOnGPU": "0",
            # our image inputs have dynamic H and W: requiring static shapes would give Core ML no node
            "RequireStaticInputShapes": "0",
        }
    return {}  # webgpu: the plug-in's defaults (NHWC convs, its buffer caches); nothing measured yet


def session_options(device: str, threads: int | None = None):
    """SessionOptions: full graph optimisation; DirectML's required settings; CPU thread count."""
    ort = import_onnxruntime()
    opts = ort.SessionOptions()
    # The graphs are static VGG convs: ORT_ENABLE_ALL fuses Conv+ReLU and picks NCHWc layouts on CPU.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only: we report a missing CUDA library, in one line
    if device == "cpu":
        # memory patterns: a third more peak memory at equal speed (docs/decisions/session-settings.md), new shapes anyway
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
    if device == "webgpu":  # a plug-in: not among get_available_providers()
        return _webgpu().problem
    ort = import_onnxruntime()
    available = ort.get_available_providers()
    if PROVIDERS[device] in available:
        return None
    if device == "directml" and sys.platform != "win32":
        return "DirectML runs on Windows only; use --device cpu (or cuda with an NVIDIA GPU)"
    if device == "coreml":
        if sys.platform != "darwin":
            return "Core ML runs on macOS only; use --device cpu (or webgpu, cuda)"
        return (
            f"this onnxruntime ({', '.join(installed_variants()) or 'none'}) has no Core ML provider: "
            "pip uninstall -y onnxruntime && pip install 'onnxstyle[cpu]'"
        )
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
    """The concrete device for a requested one; auto tries AUTO_ORDER, then the CPU."""
    if device not in DEVICES:
        raise DeviceUnavailable(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device != "auto":
        problem = _provider_problem(device)
        if problem:
            raise DeviceUnavailable(problem)
        return device
    for candidate in AUTO_ORDER:
        if _auto_may_use(candidate):
            return candidate
    return "cpu"


def _auto_may_use(device: str) -> bool:
    """Whether auto may pick `device`: it works here, and is a GPU (auto never picks a software
    WebGPU adapter, which is slower than ORT's own CPU provider)."""
    if device == "webgpu":
        return _webgpu().gpu
    if _provider_problem(device) is not None:
        return False
    return device != "cuda" or _gpu_driver_present()


# ----------------------------------------------------------------------------- WebGPU (a plug-in EP)

WEBGPU_MIN_ORT = (1, 24, 4)  # onnxruntime-ep-webgpu 0.4 refuses older runtimes (its README)
# The plug-in's own switch: list a WebGPU device on the CPU when ORT finds no GPU (Dawn then takes
# whatever adapter Vulkan/D3D12/Metal offers, a software one included). Only a forced device uses it.
SOFTWARE_ADAPTER = "ORT_WEBGPU_EP_ALLOW_SOFTWARE_ADAPTER"


@dataclass(frozen=True)
class WebGpu:
    """What the WebGPU plug-in offers in this process."""

    devices: tuple = ()  # OrtEpDevice: the ones a session may use, GPUs first
    gpu: bool = False  # a GPU is among them (auto may pick webgpu)
    problem: str | None = None  # why a forced webgpu can't work here
    adapters: tuple[str, ...] = ()  # for `onnxstyle info`


@lru_cache(maxsize=1)  # the answer doesn't change within a process (tests clear it)
def _webgpu() -> WebGpu:
    """Register the onnxruntime-ep-webgpu plug-in once and find its devices.

    ORT lists a WebGPU device for each GPU its own device discovery finds (the plug-in's
    GetSupportedDevices); Dawn picks the physical adapter when a session starts. On Linux Dawn reaches
    the GPU through the Vulkan loader, which ORT's listing doesn't need: we check it ourselves."""
    try:
        import onnxruntime_ep_webgpu as plugin  # noqa: PLC0415 (optional: the webgpu extra)
    except ImportError:
        needs = "Python 3.11+ and " if sys.version_info < (3, 11) else ""
        return WebGpu(
            problem=f"webgpu needs {needs}the onnxruntime-ep-webgpu plug-in: "
            f"pip install '{EXTRAS['webgpu']}'"
        )
    try:
        ort = import_onnxruntime()
    except DeviceUnavailable as exc:
        return WebGpu(problem=str(exc))
    if _version(ort.__version__) < WEBGPU_MIN_ORT or not hasattr(ort, "get_ep_devices"):
        return WebGpu(
            problem=f"webgpu needs onnxruntime 1.24.4 or newer, not {ort.__version__}: "
            "pip install -U 'onnxruntime>=1.24.4'"
        )
    failed = _register_webgpu(plugin.get_library_path())
    if failed:
        return WebGpu(problem=f"the WebGPU plug-in failed to load: {failed}")
    listed = [d for d in ort.get_ep_devices() if d.ep_name == PROVIDERS["webgpu"]]
    gpus = [d for d in listed if d.device.type == ort.OrtHardwareDeviceType.GPU]
    software = (
        [d for d in listed if d not in gpus] if os.environ.get(SOFTWARE_ADAPTER) == "1" else []
    )
    adapters = tuple(_adapter_name(d) for d in gpus) + tuple(
        f"any adapter Dawn finds, software ones included ({SOFTWARE_ADAPTER}=1)" for _ in software
    )
    loader = _vulkan_loader_present()
    if not gpus and not software:
        problem = "no GPU for WebGPU: ONNX Runtime lists none" + (
            "" if loader else ", and the Vulkan loader (libvulkan.so.1) is missing"
        )
        return WebGpu(problem=f"{problem}; use --device cpu")
    if not loader:
        return WebGpu(
            adapters=adapters,
            problem="webgpu needs the Vulkan loader (libvulkan.so.1) and the GPU's Vulkan driver: "
            "apt install libvulkan1 mesa-vulkan-drivers (AMD, Intel; NVIDIA's driver brings its "
            "own); use --device cpu meanwhile",
        )
    return WebGpu(devices=tuple(gpus + software), gpu=bool(gpus), adapters=adapters)


@lru_cache(maxsize=1)
def _register_webgpu(library: str) -> str:
    """Register the plug-in's library with ORT, once per process: its error line, or "".

    Once only, and not at all if its devices are listed already: a second, refused registration
    ("already registered") left ORT 1.32 segfaulting in the next WebGPU session (seen here)."""
    ort = import_onnxruntime()
    if any(d.ep_name == PROVIDERS["webgpu"] for d in ort.get_ep_devices()):
        return ""  # registered by someone else in this process
    try:
        ort.register_execution_provider_library("webgpu", library)
    except Exception as exc:  # ORT's own error types
        return first_line(exc)
    return ""


def _version(text: str) -> tuple[int, ...]:
    """Version text as numbers: "1.24.4" -> (1, 24, 4); a pre-release tail is dropped."""
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _adapter_name(ep_device) -> str:
    """A listed WebGPU device as a person reads it: vendor, name when ORT knows it, PCI ids."""
    hardware = ep_device.device
    name = dict(hardware.metadata).get("Description", "")
    ids = f"{hardware.vendor_id:04x}:{hardware.device_id:04x}"
    return " ".join(part for part in (hardware.vendor, name, f"[{ids}]") if part)


def _vulkan_loader_present() -> bool:
    """Whether Dawn can reach a GPU: Linux needs the Vulkan loader (Windows has D3D12, macOS Metal)."""
    if not sys.platform.startswith("linux"):
        return True
    try:
        ctypes.CDLL("libvulkan.so.1")
    except OSError:
        return False
    return True


def _webgpu_session_problem(message: str) -> str:
    """A failed WebGPU session's ORT message as one line a user can act on."""
    # Dawn's "Failed to get a WebGPU adapter: No supported adapters": no driver for this GPU
    if "adapter" in message.lower():
        return (
            "webgpu found no usable GPU adapter (no Vulkan driver for this GPU? "
            "apt install mesa-vulkan-drivers for AMD and Intel); use --device cpu"
        )
    return f"webgpu session failed: {message.split(' : ')[-1]}"


# What onnxruntime-gpu's CUDA provider loads (readelf -d of 1.31.1's libonnxruntime_providers_cuda.so:
# NEEDED libcublasLt, libcublas, libcurand, libcudart; cuDNN by dlopen of libcudnn.so.9, nvrtc and cufft
# when an op wants them), in load order: cublasLt before cublas, which needs it.
CUDA_LIBRARIES = (
    "libcudart.so.13",
    "libcublasLt.so.13",
    "libcublas.so.13",
    "libcurand.so.10",
    "libnvrtc.so.13",
    "libcufft.so.12",
    "libcudnn.so.9",
)


def cuda_library_dirs(roots: list[Path] | None = None) -> list[Path]:
    """NVIDIA's pip wheels' library folders under each root (default: sys.path). The [cuda] extras
    and a CUDA build of torch install the same wheels: CUDA 13's in nvidia/cu13/lib and
    nvidia/cudnn/lib, CUDA 12's one folder per library (nvidia/cublas/lib, ...)."""
    folders: list[Path] = []
    for root in roots if roots is not None else [Path(p) for p in sys.path if p]:
        try:
            found = sorted(root.glob("nvidia/*/lib"))
        except OSError:  # an unreadable or odd sys.path entry
            continue
        folders += [f for f in found if f.is_dir() and f not in folders]
    return folders


def find_cuda_libraries(folders: list[Path]) -> dict[str, Path]:
    """Each of CUDA_LIBRARIES found in `folders` (the first folder that has it), in load order."""
    found = {}
    for name in CUDA_LIBRARIES:
        path = next((f / name for f in folders if (f / name).is_file()), None)
        if path is not None:
            found[name] = path
    return found


def load_libraries(paths: dict[str, Path]) -> dict[str, str]:
    """Load each library by its path; name -> the path, or why it failed (the provider's own load
    then names what is missing)."""
    loaded = {}
    for name, path in paths.items():
        try:
            # global, so the provider's own dlopen of the same name finds this copy
            ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
            loaded[name] = str(path)
        except OSError as exc:
            loaded[name] = f"failed: {first_line(exc)}"
    return loaded


@lru_cache(maxsize=1)
def _preload_cuda_libraries() -> dict[str, str]:
    """Load CUDA/cuDNN from NVIDIA's pip wheels wherever they are on sys.path: the [cuda] extras'
    or, without those, a CUDA build of torch's (same wheels, same folders); the libraries not found
    there are left to the system loader (LD_LIBRARY_PATH, ldconfig). Quiet: onnxruntime's own
    preload_dlls looks only beside onnxruntime and prints its failures on stdout. Returns what was
    loaded from where (gpu-run.sh prints it)."""
    if sys.platform != "linux":  # Windows: onnxruntime's preload_dlls knows the DLL folders
        ort = import_onnxruntime()
        if hasattr(ort, "preload_dlls"):
            try:
                ort.preload_dlls()
            except Exception:  # missing wheels: the session check names the problem
                pass
        return {}
    return load_libraries(find_cuda_libraries(cuda_library_dirs()))


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
    options = session_options(device, threads)
    providers: list | None = [PROVIDERS["cpu"]]
    if device == "webgpu":
        # a plug-in EP is chosen by device, not by name (the CPU stays the fallback); one device:
        # the plug-in refuses more ("supports one device at a time")
        options.add_provider_for_devices(list(_webgpu().devices[:1]), provider_options(device))
        providers = None
    elif device != "cpu":
        providers.insert(0, (PROVIDERS[device], provider_options(device)))
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # ORT raises its own types; the user needs the file and the reason
        first = first_line(exc)
        if device == "webgpu" and "model" not in first.lower():
            raise DeviceUnavailable(_webgpu_session_problem(first)) from None
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
    """For `onnxstyle info` and the worker's hello: each device with whether it can be used here
    and, if not, why; webgpu's row names its adapters ("adapters", a list of strings)."""
    rows = []
    for device in DEVICES[1:]:
        try:
            problem = _provider_problem(device)
        except DeviceUnavailable as exc:
            problem = str(exc)
        if problem is None and device == "cuda" and not _gpu_driver_present():
            problem = "no NVIDIA GPU driver found (libcuda)"
        row = {
            "device": device,
            "provider": PROVIDERS[device],
            "available": problem is None,
            "reason": problem or "",
        }
        if device == "webgpu":
            row["adapters"] = list(_webgpu().adapters)
        rows.append(row)
    return rows


def device_lines() -> list[str]:
    """`onnxstyle info`'s device lines: available or why not, adapters, where pixel updates run."""
    lines = []
    for row in available_devices():
        state = "available" if row["available"] else f"unavailable: {row['reason']}"
        if row.get("adapters"):
            state += f" (adapter: {', '.join(row['adapters'])})"
        if row["available"]:  # the optimiser's path depends on the device and the installed package
            state += f"; pixel updates on the {pixel_updates(row['device'])}"
        lines.append(f"{row['device']:<9} {row['provider']:<24} {state}")
    return lines


def onnxruntime_version() -> str:
    """The installed onnxruntime module's version, or "" when it is missing."""
    try:
        return import_onnxruntime().__version__
    except DeviceUnavailable:
        return ""


# ------------------------------------------------------------------------------ values on a device


def device_loop(device: str) -> bool:
    """Whether runs on `device` (a concrete one) keep the optimiser's state there and update it
    with graphs (core/device_optim.py), rather than in numpy on the host."""
    if (
        device == "cpu"
    ):  # no copies to save, and numpy's updates are cheaper (docs/decisions/device-optimiser.md)
        return False
    if device == "coreml":  # Core ML's tensors live in host memory: nothing to keep on a device
        return False
    # the user's way back to the host path, should a GPU's device loop misbehave (it has not yet
    # been timed on a GPU: docs/decisions/device-optimiser.md)
    if os.environ.get("ONNXSTYLE_PIXEL_UPDATES") == "host":
        return False
    if device == "webgpu":
        return _webgpu_values_work()
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


@lru_cache(maxsize=1)
def _webgpu_values_work() -> bool:
    """Whether this onnxruntime allocates OrtValues on WebGPU and reads them back with numpy().

    ORT 1.32 does, through the shared allocator the plug-in registers with its device (measured: the
    device loop's iterates followed the CPU's within 7e-5 over 20 L-BFGS evaluations on a Vulkan
    software adapter; docs/decisions/webgpu-ep.md); an older binding may not, so we try. The update
    graphs' float64 scalars and the NaN check have no WebGPU kernel and run on the CPU inside their
    graphs (ORT copies g down for the check): still fewer copies than the host path, which sends the
    image and every constant up and the gradient down on each evaluation."""
    if _webgpu().problem is not None:
        return False
    try:
        value = import_onnxruntime().OrtValue.ortvalue_from_shape_and_type(
            [1], np.float32, *PLACES["webgpu"]
        )
        value.numpy()
    except Exception:  # an older binding, or no readback: the host path
        return False
    return True


def pixel_updates(device: str) -> str:
    """For `onnxstyle info`: where a run on `device` computes its pixel updates."""
    if device == "directml" and not _dml_values_work():
        return "host (numpy: this onnxruntime can't allocate OrtValues on DirectML)"
    if device == "webgpu" and not _webgpu_values_work():
        return "host (numpy: this onnxruntime can't allocate OrtValues on WebGPU)"
    if device == "coreml":
        return "host (numpy: Core ML's tensors live in host memory)"
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


def empty(
    shape: tuple[int, ...], place: tuple[str, int], dtype: np.dtype | type[np.generic] = np.float32
):
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
