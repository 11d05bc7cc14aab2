"""What a long-running command shows and hears in a terminal: the progress bar, the signals that
cancel it, the one-line messages and durations. Shared by every command that runs the engine."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from onnxstyle.core.engine import Progress

PROG = "onnxstyle"


def say(message: str) -> None:
    """One line on stderr, prefixed with the command's name."""
    print(f"{PROG}: {message}", file=sys.stderr)


def error(message: str) -> None:
    """A user-facing error, forced onto one line."""
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)


@contextmanager
def progress_bar(quiet: bool) -> Iterator[Callable[[Progress], None]]:
    """A tqdm bar per scale: step/steps, loss and the engine's ETA for the whole run. The callback
    takes the engine's Progress: a local run's, or a worker's (plugin/client.py converts them)."""
    if quiet:
        yield lambda progress: None
        return
    from tqdm import tqdm  # noqa: PLC0415 (optional: only with a progress bar)

    state: dict[str, Any] = {"bar": None, "scale": None}

    def show(progress: Progress) -> None:
        bar = state["bar"]
        if bar is None or state["scale"] != progress.scale:
            if bar is not None:
                bar.close()
            bar = state["bar"] = tqdm(
                total=progress.steps,
                desc=f"scale {progress.scale}/{progress.scales}",
                unit="step",
                file=sys.stderr,
                dynamic_ncols=True,
                leave=True,
                bar_format="{desc} {bar} {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
            )
            state["scale"] = progress.scale
        tiles = f"tile {progress.tile}/{progress.tiles}, " if progress.tiles > 1 else ""
        eta = "" if progress.eta_s is None else f", ETA {duration(progress.eta_s)}"
        bar.set_postfix_str(f"{tiles}loss {progress.loss:.4g}{eta}", refresh=False)
        bar.update(progress.step - bar.n)

    try:
        yield show
    finally:
        if state["bar"] is not None:
            state["bar"].close()


class Signals:
    """What Ctrl-C, SIGTERM and SIGHUP did: the first one cancels at the engine's next step; a
    second, or one once the engine is done (the save), stops at once (KeyboardInterrupt), and
    write_atomic removes its temporary file."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.at_once = False

    def cancelled(self) -> bool:
        return self.received is not None

    def code(self) -> int:
        """The exit status: 128 + the signal's number, as shells report it (130 for Ctrl-C)."""
        return 128 + (self.received or signal.SIGINT)

    def handle(self, signum, frame) -> None:
        first = self.received is None
        self.received = self.received or signum
        if not first or self.at_once:
            raise KeyboardInterrupt
        print(
            f"\n{PROG}: cancelling at the next step (Ctrl-C again to stop at once)", file=sys.stderr
        )


CANCELLING_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


@contextmanager
def signals_cancel() -> Iterator[Signals]:
    """SIGINT, SIGTERM and SIGHUP cancel the run (see Signals) instead of killing it mid-write."""
    signals = Signals()
    previous = {}
    try:
        for number in CANCELLING_SIGNALS:
            previous[number] = signal.signal(number, signals.handle)
    except ValueError:  # not the main thread (embedded use): signals keep their meaning
        pass
    try:
        yield signals
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def cancelled(code: int, snapshots: list[Path]) -> int:
    """The one honest line: nothing written, or which snapshots were kept (they are wanted)."""
    if snapshots:
        say(
            f"cancelled; the result was not written; kept {len(snapshots)} snapshot(s) "
            f"in {snapshots[0].parent}, the last {snapshots[-1].name}"
        )
    else:
        say("cancelled; nothing written")
    return code


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
