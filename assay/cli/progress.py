"""Progress of long commands: a bar per task in a terminal, one compact line every few seconds
otherwise (a pipe, a CI log), so a log file gets a readable trace instead of redrawn bars.

    with progress_display(console) as progress:
        task = progress.add_task("generate", total=50)
        progress.advance(task, 25, completions=100, tokens=3_100)

`advance` adds rows and any counters (completions, tokens, steps, ...); the display shows each
counter as a rate per second since the task was added, and an ETA from the row rate.
Both displays are thread-safe, so a polling thread may advance tasks while the main thread works.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

# Short names for common counters, so a line fits in 80 columns.
SHORT_NAMES = {"completions": "compl", "tokens": "tok", "samples": "smp", "steps": "step"}
DEFAULT_INTERVAL_S = 10.0


def _rate_text(name: str, count: float, seconds: float) -> str:
    rate = count / seconds if seconds > 0 else 0.0
    shown = f"{rate:.1f}" if rate < 100 else f"{rate:.0f}"
    return f"{shown} {SHORT_NAMES.get(name, name)}/s"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


@dataclass
class TaskState:
    """What a display knows about one task."""

    name: str
    total: int | None
    unit: str = "rows"
    done: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)  # latest values, e.g. the loss
    started: float = field(default_factory=time.monotonic)  # when the task was added
    finished: float | None = None  # monotonic time the task reached its total

    def elapsed(self, now: float) -> float:
        return (self.finished or now) - self.started

    def eta_s(self, now: float) -> float | None:
        """Seconds left at the rate so far; None before any progress or without a total."""
        elapsed = self.elapsed(now)
        if self.total is None or self.done == 0 or elapsed <= 0:
            return None
        return max(0.0, (self.total - self.done) * elapsed / self.done)

    def rates(self, now: float) -> list[str]:
        """The counters as rates per second, then the latest values."""
        elapsed = self.elapsed(now)
        rates = [_rate_text(name, value, elapsed) for name, value in self.metrics.items()]
        return rates + [f"{name} {value:.4g}" for name, value in self.values.items()]

    def line(self, now: float) -> str:
        """`generate 25/50 rows, 3.4 compl/s, 110 tok/s, ETA 0:01:10`"""
        count = f"{self.done}/{self.total}" if self.total is not None else str(self.done)
        parts = [f"{self.name} {count} {self.unit}", *self.rates(now)]
        eta = self.eta_s(now)
        if self.total is not None and self.done >= self.total:
            parts.append(f"done in {_duration(self.elapsed(now))}")
        elif eta is not None:
            parts.append(f"ETA {_duration(eta)}")
        return ", ".join(parts)


class _Display:
    """Task bookkeeping shared by both displays."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.tasks: list[TaskState] = []

    def add_task(self, name: str, total: int | None = None, unit: str = "rows") -> int:
        """Start showing a task.

        Args:
            name: What the task is called on screen (e.g. a stage name).
            total: Units to do, if known (rows, steps).
            unit: What a unit is called in the periodic line.

        Returns:
            The task's id for `advance`.
        """
        with self._lock:
            self.tasks.append(TaskState(name, total, unit))
            return len(self.tasks) - 1

    def advance(
        self, task: int, n: int = 0, values: dict[str, float] | None = None, **metrics: float
    ) -> None:
        """Add `n` done units and counters (e.g. completions=4, tokens=310) to a task.

        Args:
            task: An id from `add_task`.
            n: Units finished since the last call.
            values: Latest values shown as they are (e.g. {"loss": 0.93}).
            **metrics: Counters added since the last call; shown as rates per second.
        """
        now = time.monotonic()
        with self._lock:
            state = self.tasks[task]
            state.done += n
            state.values.update(values or {})
            for name, value in metrics.items():
                state.metrics[name] = state.metrics.get(name, 0.0) + value
            if state.total is not None and state.done >= state.total and state.finished is None:
                state.finished = now
        self._changed(task)

    def set_total(self, task: int, total: int | None) -> None:
        """Change a task's total (e.g. once a count becomes known)."""
        with self._lock:
            self.tasks[task].total = total
        self._changed(task)

    def _changed(self, task: int) -> None:
        """Hook for the live display."""

    def summary(self) -> str:
        """All tasks on one line."""
        now = time.monotonic()
        with self._lock:
            return "; ".join(state.line(now) for state in self.tasks)


class LineDisplay(_Display):
    """One line with every task every `interval_s` seconds (and one at the end), for pipes."""

    def __init__(self, console: Console, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        super().__init__()
        self.console, self.interval_s = console, interval_s
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="progress-lines", daemon=True)

    def _print(self) -> None:
        if self.tasks:
            line = f"[{_duration(time.monotonic() - self._started)}] {self.summary()}"
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._print()

    def __enter__(self) -> LineDisplay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._print()


class _RatesColumn(ProgressColumn):
    """The task's counters as rates per second."""

    def __init__(self, display: LiveDisplay) -> None:
        super().__init__()
        self.display = display

    def render(self, task: Task) -> Text:
        state = self.display.tasks[task.fields["index"]]
        return Text(", ".join(state.rates(time.monotonic())), style="progress.data.speed")


class LiveDisplay(_Display):
    """A rich progress bar per task, redrawn in place (terminals only)."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            _RatesColumn(self),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._ids: list[int] = []

    def add_task(self, name: str, total: int | None = None, unit: str = "rows") -> int:
        index = super().add_task(name, total, unit)
        self._ids.append(self.progress.add_task(name, total=total, index=index))
        return index

    def _changed(self, task: int) -> None:
        state = self.tasks[task]
        self.progress.update(self._ids[task], completed=state.done, total=state.total)

    def __enter__(self) -> LiveDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


@contextmanager
def progress_display(
    console: Console | None = None, *, interval_s: float = DEFAULT_INTERVAL_S, live: bool | None = None
) -> Iterator[LiveDisplay | LineDisplay]:
    """A progress display for the duration of a block: bars on a terminal, lines otherwise.

    Args:
        console: Where to draw (default: a new rich Console on stdout).
        interval_s: Seconds between two lines when not on a terminal.
        live: Force bars (True) or lines (False); default: bars when the console is a terminal.

    Yields:
        The display: `add_task(name, total)`, then `advance(task, n, **counters)`;
        `set_total(task, total)` when a total becomes known.
    """
    console = console or Console()
    use_bars = console.is_terminal and not console.is_dumb_terminal if live is None else live
    display = LiveDisplay(console) if use_bars else LineDisplay(console, interval_s)
    with display:
        yield display
