"""Errors a user sees: each carries one line that front ends print as it is (no traceback)."""


class StyleError(Exception):
    """A failure the user can act on; str() is a single user-facing line."""


class ImageError(StyleError):
    """An input image is missing, unreadable, corrupt, empty or absurdly large."""


class DeviceUnavailable(StyleError):
    """The requested execution provider can't be used here (package variant, libraries, hardware)."""


class ModelError(StyleError):
    """A model file is missing, corrupt or of the wrong format."""


class Cancelled(Exception):
    """The caller asked to stop; nothing was written."""


def first_line(exc: BaseException) -> str:
    """The first line of a library exception's message (they can run to pages), else its type name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether an exception is an allocation failure: ONNX Runtime (CPU and CUDA) reports those as
    its own exception types, not MemoryError, so the message decides."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return any(
        s in text
        for s in ("out of memory", "failed to allocate", "bad_alloc", "cudaerrormemoryallocation")
    )
