"""Allocation failures are recognised whichever runtime raised them (CLI and worker both rely on it)."""

import pytest

from onnxstyle.core.errors import first_line, is_out_of_memory


@pytest.mark.parametrize(
    "exc",
    [
        MemoryError(),
        RuntimeError(
            "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for requested buffer of size 123"
        ),
        RuntimeError("CUDA failure 2: out of memory ; GPU=0"),
        RuntimeError("std::bad_alloc"),
        RuntimeError("cudaErrorMemoryAllocation"),
    ],
)
def test_allocation_failures_are_out_of_memory(exc):
    assert is_out_of_memory(exc)


def test_other_errors_are_not():
    assert not is_out_of_memory(
        RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : wrong shape")
    )
    assert not is_out_of_memory(ValueError("bad value"))


def test_first_line_of_a_long_library_message():
    assert first_line(RuntimeError("first\nsecond\nthird")) == "first"
    assert first_line(RuntimeError("")) == "RuntimeError"
