"""Progress of a run on the terminal: one line per exposure (and per Stage 3 product) showing the
stage and step it is in, then a summary.

The flows call :func:`emit` at a few points (a member starts, a stage starts or is
reused, a step ends, a row ends).  Nothing is shown unless a display is active:
the command line starts one with :func:`display` only when stdout is a terminal,
so pipes, files and tests see nothing of it.  Emitting never fails a run.

Rows belong to threads: ``begin`` makes a row the current one of the calling
thread, and step events advance the current row of the thread they come from,
which is how the exposures of an association, calibrated on a thread pool, each
advance their own line.
"""

from __future__ import annotations

import contextlib
import threading

_active = None  # the running _Display, if any
_local = threading.local()


def emit(event: str, **info) -> None:
    """Tell the display (if one is running) what happened: ``begin``, ``stage``, ``step`` or ``end``."""
    d = _active
    if d is None:
        return
    try:
        d.handle(event, info)
    except Exception:  # noqa: BLE001 - a progress display never fails the science
        pass


def active() -> bool:
    return _active is not None


class _Display:
    def __init__(self, title: str, console=None):
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            SpinnerColumn(finished_text="[green]✓"),
            TextColumn("{task.description}"),
            BarColumn(bar_width=20),
            TextColumn("{task.completed} steps"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.rows: dict[str, dict] = {}
        self.lock = threading.Lock()
        self.title = title
        self.default = self._row(title, title)

    def _row(self, key: str, label: str) -> dict:
        with self.lock:
            row = self.rows.get(key)
            if row is None:
                tid = self.progress.add_task(label, total=None)
                row = self.rows[key] = {"id": tid, "label": label, "stage": "", "step": "", "done": False}
        return row

    def _current(self) -> dict:
        key = getattr(_local, "key", None)
        return self.rows.get(key) or self.default

    def _show(self, row: dict) -> None:
        parts = [f"[bold]{row['label']}[/bold]"]
        if row["stage"]:
            parts.append(row["stage"])
        if row["step"]:
            parts.append(row["step"])
        self.progress.update(row["id"], description=" · ".join(parts))

    def handle(self, event: str, info: dict) -> None:
        if event == "begin":
            row = self._row(info["key"], info.get("label") or info["key"])
            _local.key = info["key"]
            self._show(row)
        elif event == "stage":
            row = self.rows.get(info.get("key")) or self._current()
            row["stage"] = info["stage"] + (" reused" if info.get("reused") else "")
            row["step"] = ""
            self._show(row)
        elif event == "step":
            row = self._current()
            status = info.get("status", "")
            row["step"] = info["step"] + (" skipped" if status == "SKIPPED" else "")
            self.progress.advance(row["id"], 1)
            self._show(row)
        elif event == "end":
            row = self.rows.get(info.get("key")) or self._current()
            row["stage"], row["step"] = info.get("status", "done"), ""
            row["done"] = True
            self._show(row)
            t = self.progress.tasks[[t.id for t in self.progress.tasks].index(row["id"])]
            self.progress.update(row["id"], total=max(t.completed, 1), completed=max(t.completed, 1))

    def finish(self) -> None:
        for row in list(self.rows.values()):
            if not row["done"] and row is not self.default:
                self.handle("end", {"key": next(k for k, v in self.rows.items() if v is row), "status": "stopped"})
        if not self.default["done"]:
            t = self.progress.tasks[[t.id for t in self.progress.tasks].index(self.default["id"])]
            if t.completed == 0 and len(self.rows) > 1:
                self.progress.remove_task(self.default["id"])  # its rows said it all
            else:
                self.handle("end", {"key": self.title, "status": "done"})


@contextlib.contextmanager
def display(title: str, *, enabled: bool | None = None, console=None):
    """Show the progress of what runs inside the block, when stdout is a terminal (or ``enabled``)."""
    global _active
    import sys

    if enabled is None:
        enabled = sys.stdout.isatty()
    if not enabled or _active is not None:
        yield None
        return
    d = _Display(title, console=console)
    _local.key = title
    _active = d
    try:
        with d.progress:
            try:
                yield d
            finally:
                d.finish()
    finally:
        _active = None
        _local.key = None


__all__ = ["emit", "display", "active"]
