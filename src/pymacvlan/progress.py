"""Progress of long jobs (fuzzing, conformance runs, benchmarks): a rich progress bar on a
terminal, plain lines otherwise (CI logs, pipes), both saying what is being done, how far it
is and how long is left.

    with Progress(len(files), "replay") as p:
        for f in files:
            p.step(f.name)      # what is being done now
            ...
            p.advance()         # one more done
            p.log("...")        # a line above the bar (or a plain line)
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

#: plain mode: a line at least this often (seconds), and at the end
PLAIN_EVERY = 10.0


class Progress:
    def __init__(self, total: int, what: str, stream: TextIO | None = None, plain: bool | None = None) -> None:
        self.total, self.what = total, what
        self.stream = stream if stream is not None else sys.stderr
        self.plain = not self.stream.isatty() if plain is None else plain
        self.done = 0
        self.doing = ""
        self._start = self._last = time.monotonic()
        self._bar: Any = None  # a rich Progress on a terminal
        self._task: Any = None

    def __enter__(self) -> Progress:
        if not self.plain:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            self._bar = Bar(TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                            TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                            TextColumn("{task.fields[doing]}"), console=Console(file=self.stream),
                            transient=False, redirect_stdout=False, redirect_stderr=False)
            self._bar.start()
            self._task = self._bar.add_task(self.what, total=self.total, doing="")
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
        else:
            self._line(final=True)

    def step(self, doing: str) -> None:
        """Say what is being done now."""
        self.doing = doing
        if self._bar is not None:
            self._bar.update(self._task, doing=doing)

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(self._task, advance=n)
        elif time.monotonic() - self._last >= PLAIN_EVERY:
            self._line()

    def log(self, message: str) -> None:
        """A line of the job's output, on stdout (above the bar when both are one terminal)."""
        if self._bar is not None and sys.stdout.isatty():
            self._bar.console.print(message, markup=False, highlight=False, soft_wrap=True)
        else:
            print(message, flush=True)

    def left(self) -> float | None:
        """Seconds left at the pace so far (None before the first step is done)."""
        if not self.done:
            return None
        spent = time.monotonic() - self._start
        return spent / self.done * (self.total - self.done)

    def _line(self, final: bool = False) -> None:
        self._last = time.monotonic()
        spent = self._last - self._start
        left = self.left()
        tail = "done" if final else (f"~{left:.0f} s left" if left is not None else "")
        doing = f" ({self.doing})" if self.doing and not final else ""
        print(f"{self.what}: {self.done}/{self.total}{doing}, {spent:.0f} s, {tail}".rstrip(", "),
              file=self.stream, flush=True)
