"""What `onnxstyle batch` shows: one progress bar for the whole batch, and the summary table."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .batch_inputs import Picture
from .terminal import duration


class BatchBar:
    """One bar for the batch: pictures done (the running ones' fractions), the running ones' steps,
    the ETA from the pictures' rate."""

    def __init__(self, total: int, quiet: bool, workers: int) -> None:
        self.total, self.quiet, self.workers = total, quiet, workers
        self.done = 0
        self.bar: Any = None

    def __enter__(self) -> BatchBar:
        if not self.quiet:
            from tqdm import tqdm  # noqa: PLC0415 (optional: only with a progress bar)

            self.bar = tqdm(
                total=self.total,
                desc=f"batch ({self.workers} worker{'s' if self.workers > 1 else ''})",
                unit="picture",
                file=sys.stderr,
                dynamic_ncols=True,
                bar_format="{desc} {bar} {n:.1f}/{total_fmt} [{elapsed}<{remaining}{postfix}]",
            )
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()

    def running(self, running: list[tuple]) -> None:
        if self.bar is None:
            return
        fraction = 0.0
        shown = []
        for name, scale, scales, step, steps in running:
            part = ((scale - 1) + step / max(steps, 1)) / max(scales, 1)
            fraction += part
            shown.append(f"{Path(name).name} {scale}/{scales} {step}/{steps}")
        self.bar.n = self.done + min(fraction, len(running))
        self.bar.set_postfix_str(", ".join(shown), refresh=False)
        self.bar.refresh()

    def finished(self, picture: Picture) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.n = self.done
            self.bar.refresh()


def summary(pictures: list[Picture], seconds: float) -> None:
    """The table: each picture, what became of it, its time and the node that made it."""
    rows = [("picture", "result", "time", "node", "note")]
    for p in pictures:
        time_text = f"{p.seconds:.1f}s" if p.seconds is not None else ""
        note = p.problem or p.note
        rows.append((str(p.source), p.state, time_text, p.node, note))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4])
    counts = {
        state: sum(p.state == state for p in pictures)
        for state in ("done", "skipped", "failed", "cancelled")
    }
    made = [p.seconds for p in pictures if p.seconds is not None]
    per = f", {sum(made) / len(made):.1f}s per picture" if made else ""
    nodes = len({p.node for p in pictures if p.node})
    print(
        f"{counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed"
        + (f", {counts['cancelled']} cancelled" if counts["cancelled"] else "")
        + f" "
        f"in {duration(seconds)}{per}"
        + (f", on {nodes} node{'s' if nodes > 1 else ''}" if nodes else "")
    )
