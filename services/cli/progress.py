"""Progress bars for the commands' long work (``audit verify``, ``audit checkpoints export``,
the IG exports, ``demo --scenario tranche``), drawn with rich on standard error.

A command's results go to standard output, which scripts parse; the bars never do. They
are drawn only when standard error is an interactive terminal: in a pipe, a log file or a
CI job (even one that sets ``FORCE_COLOR``) :class:`ProgressBar` writes nothing at all.
Each bar is transient: it disappears when its work is done, when a result line is printed
(:meth:`ProgressBar.write`) and when the command ends, by an error too, before the one line
that reports it.

The work itself reports through plain callbacks (``on_progress(done, total)``, see
:meth:`ProgressBar.callback`), so the core knows nothing of rich."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

#: at most this often, in seconds, a bar takes a new count (the work may report every item)
UPDATE_INTERVAL = 0.1


def terminal_stderr() -> Console | None:
    """A console on standard error if it is an interactive terminal, else None."""
    console = Console(stderr=True)
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        on_tty = bool(isatty and isatty())
    except ValueError:  # closed
        on_tty = False
    return console if on_tty and console.is_interactive else None


def progress_on_stderr() -> ProgressBar:
    """The progress bar of a command: on standard error when it is a terminal, else silent."""
    return ProgressBar(terminal_stderr())


class _Count(ProgressColumn):
    """``done/total``; nothing while the total is unknown."""

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text("")
        return Text(f"{int(task.completed)}/{int(task.total)}", style="progress.download")


class ProgressBar:
    """One bar per piece of work, named by its description; on ``console`` when that is an
    interactive terminal, and silent with None or any other console. Use it as a context
    manager: leaving it (by an error too) takes the bars off the screen."""

    def __init__(self, console: Console | None) -> None:
        self._progress: Progress | None = None
        if console is not None and console.is_interactive:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                _Count(),
                TimeElapsedColumn(),
                console=console,
                transient=True,
                # standard output stays the command's own: only results go there
                redirect_stdout=False,
            )
        self._tasks: dict[str, TaskID] = {}
        self._updated: dict[str, float] = {}
        self._shown = False

    @property
    def shown(self) -> bool:
        """Whether bars are drawn at all (standard error is a terminal)."""
        return self._progress is not None

    def update(self, description: str, done: int, total: int | None = None) -> None:
        """``done`` of ``total`` (None: not known) of the work named ``description``; the
        work's bar goes once ``done`` reaches ``total``."""
        progress = self._progress
        if progress is None:
            return
        task = self._tasks.get(description)
        if total is not None and done >= total:
            if task is not None:
                progress.remove_task(task)
                del self._tasks[description], self._updated[description]
                if not self._tasks:
                    self._hide()
            return
        now = time.monotonic()
        if task is None:
            self._tasks[description] = progress.add_task(description, total=total, completed=done)
            self._updated[description] = now
        elif now - self._updated[description] >= UPDATE_INTERVAL:
            progress.update(task, completed=done, total=total)
            self._updated[description] = now
        if not self._shown:
            progress.start()
            self._shown = True

    def callback(self, description: str) -> Callable[[int, int], None]:
        """An ``on_progress(done, total)`` for the work named ``description``."""

        def on_progress(done: int, total: int) -> None:
            self.update(description, done, total)

        return on_progress

    def write(self, text: str = "") -> None:
        """A result line on standard output, as ``print`` writes it, with the bars taken off
        the screen first (they come back at the next update)."""
        self._hide()
        print(text, flush=True)

    def close(self) -> None:
        """Take every bar off the screen, for good."""
        self._hide()
        if self._progress is not None:
            for task in self._tasks.values():
                self._progress.remove_task(task)
        self._tasks.clear()
        self._updated.clear()

    def _hide(self) -> None:
        if self._shown and self._progress is not None:
            self._shown = False
            self._progress.stop()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
