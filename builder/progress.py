"""Progress a person can see: what is running, and for transfers bytes and rate.

One small interface, passed in (``BuildContext.progress``, a ``progress=`` argument),
never looked up globally::

    with progress.task("download libc6 2.36-9", total=size) as task:
        for chunk in body:
            task.advance(len(chunk))
    with progress.task("pip install -r requirements.txt") as task:
        task.status("Collecting numpy==2.4.6")     # a phase: no total, a status line
    progress.log("pyinstaller: freezing app.py")   # a line that stays

Three renderings, chosen by :func:`for_stream`:

* :class:`LiveProgress` on a terminal: rich's live display, one row per running task
  (spinner, what, bytes, rate, elapsed, latest status), log lines printed above it;
* :class:`PlainProgress` when stderr is not a terminal (CI logs): a ``done`` line per
  finished task, and for a running one at most one line per ``PLAIN_INTERVAL`` seconds;
* :class:`NullProgress` for ``-q``: nothing.

Tasks may be used from several threads (layers build, blobs upload, in parallel).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from typing import IO, Any, BinaryIO, Callable, Protocol, Sequence

from .humanize import size as human_size

PLAIN_INTERVAL = 10.0
"""Seconds between two lines about one running task when stderr is not a terminal."""

STATUS_WIDTH = 60
"""Characters of a task's status (its latest output line) shown on a terminal."""


class Task(Protocol):
    def advance(self, n: int) -> None: ...
    def status(self, text: str) -> None: ...
    def restart(self, at: int = 0) -> None: ...
    def __enter__(self) -> "Task": ...
    def __exit__(self, *exc: object) -> None: ...


class Progress(Protocol):
    def log(self, message: str) -> None: ...
    def task(self, description: str, total: int | None = None, *,
             brief: bool = False) -> Task:
        """A row for work under way (``total`` bytes, or None for a phase). ``brief``:
        the caller reports the result itself (a layer's ``✔`` line), so plain lines
        say ``done`` only if it ran long enough to have said ``...``."""

    def close(self) -> None: ...


# -- nothing (-q) ------------------------------------------------------------------------

class _NullTask:
    def advance(self, n: int) -> None:
        pass

    def status(self, text: str) -> None:
        pass

    def restart(self, at: int = 0) -> None:
        pass

    def __enter__(self) -> "_NullTask":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class NullProgress:
    """``-q``: no progress, no log lines."""

    def log(self, message: str) -> None:
        pass

    def task(self, description: str, total: int | None = None, *,
             brief: bool = False) -> Task:
        return _NullTask()

    def close(self) -> None:
        pass


# -- plain lines (CI logs) ---------------------------------------------------------------

class _PlainTask:
    def __init__(self, owner: "PlainProgress", description: str, total: int | None,
                 brief: bool) -> None:
        self.owner, self.description, self.total = owner, description, total
        self.brief, self.said = brief, False
        self.done = 0
        self.latest = ""
        self.started = self.printed = owner.clock()

    def advance(self, n: int) -> None:
        self.done += n
        self.owner._maybe_report(self)

    def status(self, text: str) -> None:
        self.latest = text.strip()
        self.owner._maybe_report(self)

    def restart(self, at: int = 0) -> None:
        self.done = at

    def __enter__(self) -> "_PlainTask":
        self.owner._start(self)
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.owner._finish(self, failed=exc_type is not None)

    def line(self, now: float, final: bool) -> str:
        elapsed = now - self.started
        parts = []
        if self.total is not None or self.done:
            amount = human_size(self.done)
            if self.total is not None and not final:
                amount += f"/{human_size(self.total)}"
            parts.append(amount)
        parts.append(f"{elapsed:.1f} s")
        if self.done and elapsed > 0:
            parts.append(f"{human_size(int(self.done / elapsed))}/s")
        text = f"{self.description} ({', '.join(parts)})"
        if not final and self.latest:
            text += f": {self.latest}"
        return text


class PlainProgress:
    """Lines for logs: ``done <task> (<bytes>, <time>, <rate>)`` when a task ends and
    ``... <task> (…): <status>`` at most every ``interval`` seconds while it runs
    (a heartbeat thread says so even for a task that reports nothing)."""

    def __init__(self, stream: IO[str], *, interval: float = PLAIN_INTERVAL,
                 clock: Callable[[], float] = time.monotonic, heartbeat: bool = True) -> None:
        self.stream, self.interval, self.clock = stream, interval, clock
        self._lock = threading.Lock()
        self._running: list[_PlainTask] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._heartbeat = heartbeat

    def log(self, message: str) -> None:
        with self._lock:
            self._write(message)

    def task(self, description: str, total: int | None = None, *,
             brief: bool = False) -> Task:
        return _PlainTask(self, description, total, brief)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def _start(self, task: _PlainTask) -> None:
        with self._lock:
            self._running.append(task)
            if self._heartbeat and self._thread is None:
                self._thread = threading.Thread(target=self._beat, daemon=True,
                                                name="ocibuild-progress")
                self._thread.start()

    def _finish(self, task: _PlainTask, failed: bool) -> None:
        with self._lock:
            if task in self._running:
                self._running.remove(task)
            if task.said or not task.brief:
                self._write(f"{'failed' if failed else 'done'}  "
                            f"{task.line(self.clock(), True)}")

    def _maybe_report(self, task: _PlainTask) -> None:
        now = self.clock()
        if now - task.printed >= self.interval:
            with self._lock:
                if now - task.printed >= self.interval:  # another thread may have printed
                    task.printed, task.said = now, True
                    self._write(f"...   {task.line(now, False)}")

    def _beat(self) -> None:
        while not self._stop.wait(min(self.interval, 1.0)):
            with self._lock:
                running = list(self._running)
            for task in running:
                self._maybe_report(task)


# -- a live display (a terminal) ---------------------------------------------------------

class _LiveTask:
    def __init__(self, owner: "LiveProgress", description: str, total: int | None) -> None:
        self.owner, self.description, self.total = owner, description, total
        self.id: Any = None

    def advance(self, n: int) -> None:
        self.owner._rich.advance(self.id, n)

    def status(self, text: str) -> None:
        text = " ".join(text.split())
        if len(text) > STATUS_WIDTH:
            text = text[:STATUS_WIDTH - 1] + "…"
        self.owner._rich.update(self.id, status=text)

    def restart(self, at: int = 0) -> None:
        self.owner._rich.update(self.id, completed=at)

    def __enter__(self) -> "_LiveTask":
        self.id = self.owner._rich.add_task(self.description, total=self.total, status="",
                                            transfer=self.total is not None)
        return self

    def __exit__(self, *exc: object) -> None:
        self.owner._rich.remove_task(self.id)


class LiveProgress:
    """rich's live display on ``stream`` (a terminal): a row per running task, log lines
    scrolling above it; the rows vanish when their task ends."""

    def __init__(self, stream: IO[str]) -> None:
        from rich.console import Console
        from rich.table import Column
        from rich.text import Text
        from rich.progress import (BarColumn, DownloadColumn, Progress, SpinnerColumn,
                                   TextColumn, TimeElapsedColumn, TransferSpeedColumn)

        class _IfTransfer(TextColumn):
            """A column shown only for tasks that move bytes (not for phases)."""

            def __init__(self, inner: Any) -> None:
                super().__init__("", table_column=Column(no_wrap=True))
                self.inner = inner

            def render(self, task: Any) -> Any:
                if task.fields.get("transfer") or task.completed:
                    return self.inner.render(task)
                return ""

        class _Shrinking(TextColumn):
            """What a task is, or its latest output line: text cut with an ellipsis, so
            these columns shrink first on a narrow terminal and the numbers stay whole."""

            def __init__(self, status: bool) -> None:
                super().__init__("", table_column=Column(
                    ratio=1 if status else None, overflow="ellipsis",
                    min_width=None if status else 24))
                self.is_status = status

            def render(self, task: Any) -> Any:
                text = task.fields.get("status", "") if self.is_status else task.description
                return Text(text, style="dim" if self.is_status else "", no_wrap=True,
                            overflow="ellipsis")

        def fixed() -> Any:
            return Column(no_wrap=True)

        self.console = Console(file=stream, highlight=False, soft_wrap=True)
        self._rich = Progress(SpinnerColumn(table_column=fixed()),
                              _Shrinking(status=False),
                              _IfTransfer(BarColumn(bar_width=16, table_column=fixed())),
                              _IfTransfer(DownloadColumn(table_column=fixed())),
                              _IfTransfer(TransferSpeedColumn(table_column=fixed())),
                              TimeElapsedColumn(table_column=fixed()),
                              _Shrinking(status=True),
                              console=self.console, transient=True, refresh_per_second=8,
                              redirect_stdout=False)  # stdout is for results (--json)
        self._rich.start()

    def log(self, message: str) -> None:
        self.console.print(message, markup=False, highlight=False)

    def task(self, description: str, total: int | None = None, *,
             brief: bool = False) -> Task:
        return _LiveTask(self, description, total)

    def close(self) -> None:
        self._rich.stop()


def for_stream(stream: IO[str], *, quiet: bool = False) -> Progress:
    """The rendering for ``stream``: nothing with ``quiet``, live on a terminal (unless
    ``TERM=dumb``), plain lines otherwise."""
    if quiet:
        return NullProgress()
    if stream.isatty() and os.environ.get("TERM", "") != "dumb":
        return LiveProgress(stream)
    return PlainProgress(stream)


# -- adapters ----------------------------------------------------------------------------

class CountingWriter:
    """Pass writes through to ``out``, calling ``advance`` with their size
    (``task.advance``)."""

    def __init__(self, out: BinaryIO, advance: Callable[[int], None]) -> None:
        self._out, self._advance = out, advance

    def write(self, data: bytes) -> int:
        n = self._out.write(data)
        self._advance(len(data))
        return n if n is not None else len(data)


class CountingReader:
    """Pass reads through from ``inner``, telling ``task`` what was read; a seek (an
    upload resuming at an offset) moves the task there."""

    def __init__(self, inner: BinaryIO, task: Task) -> None:
        self._inner, self._task = inner, task
        task.restart()

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n)
        self._task.advance(len(data))
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        position = self._inner.seek(offset, whence)
        self._task.restart(position)
        return position

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __enter__(self) -> "CountingReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.close()


def streaming_runner(progress: Progress, label: Callable[[Sequence[str]], str | None],
                     hide: Callable[[str], object] = lambda line: None,
                     ) -> Callable[..., "subprocess.CompletedProcess[str]"]:
    """A runner shaped like :func:`subprocess.run` that shows each output line of the
    commands ``label`` names as the status of a task called that (pip's
    ``Collecting …``), and still returns the whole output. Commands ``label``
    returns None for run as :func:`subprocess.run` would. A line ``hide`` says
    something true of is returned but not shown (a known-harmless warning)."""

    def run(cmd: Sequence[str], **kwargs: Any) -> "subprocess.CompletedProcess[str]":
        name = label(cmd)
        if name is None or kwargs.get("stdout") is not subprocess.PIPE \
                or kwargs.get("stderr") is not subprocess.STDOUT:
            return subprocess.run(cmd, **kwargs)
        kwargs.pop("check", None)
        kwargs.pop("capture_output", None)
        lines: list[str] = []
        with progress.task(name) as task:
            with subprocess.Popen(cmd, **{**kwargs, "bufsize": 1}) as proc:
                assert proc.stdout is not None
                for line in proc.stdout:
                    lines.append(line)
                    if line.strip() and not hide(line):
                        task.status(line)
                proc.wait()
        return subprocess.CompletedProcess(list(cmd), proc.returncode, "".join(lines), None)

    return run
