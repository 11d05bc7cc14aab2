"""Where the CUDA provider's libraries are found: NVIDIA's pip wheels on sys.path (the [cuda] extras'
or a CUDA build of torch's), on a fake folder layout (no GPU here)."""

import sys
from pathlib import Path

import pytest

from onnxstyle.core import runtime


def _layout(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _real_library() -> bytes:
    """A shared library that loads anywhere on Linux (libm), to stand in for a CUDA one."""
    for folder in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64"):
        path = Path(folder) / "libm.so.6"
        if path.is_file():
            return path.read_bytes()
    pytest.skip("no libm.so.6 to stand in for a CUDA library")


def test_torch_wheel_folders_are_found_in_load_order(tmp_path):
    # a CUDA 13 torch's site-packages: one folder for the toolkit, one for cuDNN; an older
    # CUDA 12 wheel beside it; a folder without libraries
    torch_site, other = tmp_path / "torch-site", tmp_path / "other"
    _layout(
        torch_site,
        {
            "torch/__init__.py": b"",
            "nvidia/cu13/lib/libcublas.so.13": b"",
            "nvidia/cu13/lib/libcublasLt.so.13": b"",
            "nvidia/cu13/lib/libcudart.so.13": b"",
            "nvidia/cudnn/lib/libcudnn.so.9": b"",
            "nvidia/cu13/include/cuda.h": b"",
        },
    )
    _layout(other, {"nvidia/cublas/lib/libcublas.so.12": b"", "nvidia/cu13/lib/libcudart.so.13": b""})  # fmt: skip
    folders = runtime.cuda_library_dirs([tmp_path / "missing", torch_site, other])
    assert folders == [
        torch_site / "nvidia/cu13/lib",
        torch_site / "nvidia/cudnn/lib",
        other / "nvidia/cu13/lib",
        other / "nvidia/cublas/lib",
    ]
    found = runtime.find_cuda_libraries(folders)
    # the first root that has a library wins; cublasLt before cublas, which needs it
    assert list(found) == ["libcudart.so.13", "libcublasLt.so.13", "libcublas.so.13", "libcudnn.so.9"]  # fmt: skip
    assert found["libcudart.so.13"] == torch_site / "nvidia/cu13/lib/libcudart.so.13"
    assert "libcublas.so.12" not in found  # a CUDA 12 library is no use to the CUDA 13 provider


def test_preload_loads_from_sys_path_and_reports_each_library(tmp_path, monkeypatch):
    if sys.platform != "linux":
        pytest.skip("the wheel folders are searched on Linux; Windows uses onnxruntime's preload")
    _layout(
        tmp_path,
        {
            "nvidia/cu13/lib/libcudart.so.13": _real_library(),
            "nvidia/cudnn/lib/libcudnn.so.9": b"not a library",
        },
    )
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    runtime._preload_cuda_libraries.cache_clear()
    try:
        loaded = runtime._preload_cuda_libraries()
    finally:
        runtime._preload_cuda_libraries.cache_clear()
    assert loaded["libcudart.so.13"] == str(tmp_path / "nvidia/cu13/lib/libcudart.so.13")
    # a broken file is reported in one line, not raised: the session check names what's missing
    assert loaded["libcudnn.so.9"].startswith("failed: ") and "\n" not in loaded["libcudnn.so.9"]
    assert set(loaded) == {"libcudart.so.13", "libcudnn.so.9"}
