"""What `finegrain run` prints: a line per task when it finishes (when it started, how long it took) or is
served from the cache, one live progress line for the running tasks (what runs, how far: rewritten in place
at a terminal, else printed every 5 minutes), the warnings and errors; everything else goes to a log file per
task.

kfp.local streams each task's whole output (its executor input and output JSON, every tqdm bar of the parallel
train tasks, interleaved) and its own bookkeeping to stdout; at 13 tasks that is thousands of lines where a
person wants to know which step runs, how far it is and what it found. While the pipeline runs,
`TaskConsole` stands in for stdout: what a task's thread writes goes to `<logs>/<task>.log` (a train task's
file is named for its member once its executor input shows which), read on the way for progress (tqdm bars,
the train step's step and epoch lines) and warnings; kfp.local's log records (task started, finished, cache
hit: seen by a root-logger filter) become the few lines shown. `verbose=True` shows everything as before.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import sys
import threading
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import TextIO

STATUS_EVERY_S = 300.0  # without a terminal, the progress line is printed at most this often
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"^Executing task '([^']+)'")
_FINISHED = re.compile(r"^Task '([^']+)' finished with status (\w+)")
_CACHED = re.compile(r"^Task (\S+) cache hit")
_BAR = re.compile(r"([A-Za-z][\w +/.-]*?):\s+(\d+)%\|")  # a tqdm bar: "validating + hashing:  45%|..."
_STEP = re.compile(r"epoch (\d+)/(\d+) step (\d+)/(\d+)")  # training.epoch.StepLog
_WARNING = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|\w+Warning: |^error: ")  # a failure shows its log's tail
# Expected and harmless: kfp.local ignoring pod settings; MLflow's SQLAlchemy deprecation warnings.
# The registered model is a pyfunc without type hints, pickled with cloudpickle: MLflow says so on every run.
_NOISE = re.compile(
    r"have no effect in the current local|SADeprecationWarning|configure_mappers|_warn_local_only_noops"
    r"|Add type hints to the `predict` method|serialized using CloudPickle"
)
_RETRY = re.compile(r"^Task (\S+) failed \(attempt (\d+)/(\d+)\)\. Retrying in ([\d.]+)s")
_RULE = re.compile(r"^-{20,}\n?$")  # kfp.local's separator between tasks


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m:02d}:{s:02d}"


class _Task:
    """A running (or finished) task: its log file, what it is called, how far it got."""

    def __init__(self, name: str, log_dir: Path, seq: int) -> None:
        self.name, self.label, self.started, self.done = name, name, time.monotonic(), False
        self.start_clock = ""  # when it started, counted from the pipeline's start
        self.path = log_dir / f"{seq:02d}-{name}.log"
        self.file = self.path.open("w", encoding="utf-8", buffering=1)  # line by line: a person may tail it
        self.progress = ""
        self._json: list[str] | None = None  # a train task's executor input being read, line by line

    def read(self, line: str) -> str | None:
        """Take one output line; returns the member's label once a train task's executor input names it."""
        if self._json is not None:
            self._json.append(line)
            if line.strip() == "}" or len(self._json) > 5000:
                try:
                    values = json.loads("\n".join(self._json))["inputs"]["parameterValues"]
                except (ValueError, KeyError, TypeError):
                    if len(self._json) > 5000:
                        self._json = None
                    return None
                self._json = None
                if "backbone" in values and "fold" in values:
                    return f"{self.name} {values['backbone']}/fold{int(float(values['fold']))}"
            return None
        if self.name == "train" and self.label == self.name and line.rstrip().endswith("Got executor_input:"):
            self._json = []
        self.progress_from(line)
        return None

    def progress_from(self, line: str) -> None:
        """How far the task is, from a train step/epoch line or a tqdm bar."""
        if m := _STEP.search(line):
            e, n_e, s, n_s = (int(g) for g in m.groups())
            self.progress = f"epoch {e}/{n_e} {100 * s // max(n_s, 1)}%"
        elif (stripped := line.strip()).startswith('{"epoch"'):
            try:
                record = json.loads(stripped)
                raw, ll = record.get("val_logloss_raw"), record["val_logloss"]  # raw: absent from older records
                self.progress = f"epoch {int(record['epoch']) + 1} done, val LogLoss {ll:.3f}"
                self.progress += f" (raw {raw:.3f})" if isinstance(raw, (int, float)) else ""
            except (ValueError, KeyError, TypeError):
                pass
        elif bars := _BAR.findall(line):
            desc, pct = bars[-1]
            self.progress = f"{desc.strip()} {pct}%"

    def rename(self, label: str) -> None:
        self.label = label
        target = self.path.with_name(f"{self.path.name[:3]}{label.replace(' ', '-').replace('/', '-')}.log")
        self.path.rename(target)  # the open file follows its new name
        self.path = target


class TaskConsole(logging.Filter):
    """`with TaskConsole(log_dir) as console: pipeline(...)`; `console.ran` / `console.cached` count tasks.

    A filter on the root logger, not a handler: kfp.local replaces the root logger's handlers while it runs."""

    def __init__(self, log_dir: Path, verbose: bool = False, out: TextIO | None = None) -> None:
        super().__init__()
        self.log_dir, self.verbose = Path(log_dir), verbose
        self._term = out  # where the lines a person reads go: sys.stdout as it is on entering
        self.ran: Counter = Counter()
        self.cached: Counter = Counter()
        self.failed: list[_Task] = []
        self._tasks: dict[int, _Task] = {}  # by the thread that runs the task
        self._lock = threading.RLock()
        self._started = time.monotonic()
        self._seq = 0
        self._partial: dict[int, str] = {}
        self._status_shown, self._status_at = "", self._started  # the first status line after STATUS_EVERY_S
        self._tty = False
        self._seen_warnings: set[str] = set()
        self._saved: list = []
        self._kfp: TextIO | None = None
        self._after_rule = False

    def __enter__(self) -> TaskConsole:
        root = logging.getLogger()
        self._saved = [root.level, sys.stdout]
        self._term = self._term or sys.stdout
        self._tty = bool(getattr(self._term, "isatty", lambda: False)())
        # kfp.local logs cache hits at INFO outside its own logging context, where the root level decides.
        root.setLevel(min(root.level or logging.WARNING, logging.INFO))
        root.addFilter(self)
        if not self.verbose:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            sys.stdout = self  # kfp.local prints task output and its log records to sys.stdout
            self._say(f"task logs: {self.log_dir}/ (finegrain run -v shows them here)")
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        # kfp.local warns that pod settings (resources, GPU, display name) do nothing locally: true, and expected.
        warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
        warnings.filterwarnings("ignore", message=".*non-Python base image.*")
        return self

    def __exit__(self, *exc) -> None:
        self._warnings.__exit__(*exc)
        root = logging.getLogger()
        root.removeFilter(self)
        root.setLevel(self._saved[0])
        sys.stdout = self._saved[1]
        with self._lock:
            self._clear_status()
            for task in self._tasks.values():
                task.file.close()
            if self._kfp is not None:
                self._kfp.close()

    def filter(self, record: logging.LogRecord) -> bool:
        msg = _ANSI.sub("", record.getMessage())
        with self._lock:
            if m := _STARTED.match(msg):
                self.ran[m.group(1)] += 1
                if not self.verbose:
                    old = self._tasks.get(record.thread)
                    if old is not None:
                        old.file.close()
                    self._seq += 1
                    self._tasks[record.thread] = _Task(m.group(1), self.log_dir, self._seq)
                    self._tasks[record.thread].start_clock = self._elapsed()
            elif m := _CACHED.match(msg):
                self.cached[m.group(1)] += 1
                self._say(f"{m.group(1)}: reused from the kfp.local cache")
            elif (m := _FINISHED.match(msg)) and not self.verbose:
                self._finished(self._tasks.get(record.thread), m.group(2))
            elif (m := _RETRY.match(msg)) and not self.verbose:
                task = self._tasks.get(record.thread)
                name, attempt, attempts, delay = m.groups()
                label = task.label if task is not None else name
                self._say(f"{label}: attempt {attempt} of {attempts} failed; kfp.local retries in {float(delay):.0f} s")
            if self.verbose or "/kfp/" not in record.pathname.replace("\\", "/"):
                return True
            # kfp.local's own records (task inputs, outputs, pipeline header): into the task's log, or kfp's
            task = self._tasks.get(record.thread)
            target = task.file if task is not None and not task.file.closed else self._kfp_log()
            target.write(f"{record.levelname} {msg}\n")
            if record.levelno >= logging.WARNING and not (_NOISE.search(msg) or _FINISHED.match(msg)):
                self._say(f"kfp.local: {msg.splitlines()[0][:300]}")
        return False

    def _kfp_log(self) -> TextIO:
        if self._kfp is None:
            self._kfp = (self.log_dir / "kfp-local.log").open("a", encoding="utf-8", buffering=1)
        return self._kfp

    def _finished(self, task: _Task | None, status: str) -> None:
        if task is None:
            return
        took = time.monotonic() - task.started
        task.done = True
        task.file.flush()
        if status == "SUCCESS":
            self._say(f"{task.label}: finished in {took:.0f} s (started at {task.start_clock})")
            return
        self.failed.append(task)
        tail = task.path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        self._say(f"{task.label}: FAILED after {took:.0f} s; its log: {task.path}")
        for line in tail:
            self._write_line("    " + line.strip())

    def write(self, text: str) -> int:
        thread = threading.get_ident()
        with self._lock:
            task = self._tasks.get(thread)
            if task is None or task.file.closed:  # the main thread (our own prints): shown as it is
                if _RULE.match(text) or (text == "\n" and self._after_rule):
                    self._after_rule = text != "\n"  # print() writes the rule, then its newline
                    return len(text)
                self._after_rule = False
                self._clear_status()
                self._term.write(text)
                return len(text)
            task.file.write(text)
            buffered = self._partial.get(thread, "") + text
            *lines, rest = buffered.split("\n")
            for line in lines:
                self._read(task, _ANSI.sub("", line.rsplit("\r", 1)[-1]))
            # a tqdm bar redraws itself with \r and no \n: read its latest state, keep only that
            rest = rest.rsplit("\r", 1)[-1] if "\r" in rest else rest
            self._partial[thread] = rest
            if "\r" in text:
                task.progress_from(rest)
            self._show_status()
        return len(text)

    def flush(self) -> None:
        self._term.flush()

    def isatty(self) -> bool:
        return False  # what the tasks' output goes to is a file

    def _read(self, task: _Task, line: str) -> None:
        label = task.read(line)
        if label:
            task.rename(label)
        elif _WARNING.search(line) and not _NOISE.search(line):
            shown = line.strip()[:300]
            if shown not in self._seen_warnings:
                self._seen_warnings.add(shown)
                self._say(f"{task.label}: {shown}")

    def _elapsed(self) -> str:
        return _clock(time.monotonic() - self._started)

    def _say(self, text: str) -> None:
        self._clear_status()
        self._write_line(f"[finegrain] {text}")

    def _write_line(self, text: str) -> None:
        self._term.write(text + "\n")
        self._term.flush()

    def _status(self) -> str:
        running = [t for t in self._tasks.values() if not t.done]
        if not running:
            return ""
        parts = [f"{t.label} {t.progress}".strip() for t in running]
        return f"[finegrain] {self._elapsed()} running: " + "; ".join(parts)

    def _show_status(self) -> None:
        status = self._status()
        if not status or status == self._status_shown:
            return
        now = time.monotonic()
        if self._tty:
            width = self._width()
            self._term.write("\r" + status[:width].ljust(len(self._status_shown[:width])))
            self._term.flush()
            self._status_shown = status
        elif now - self._status_at >= STATUS_EVERY_S:
            self._write_line(status)
            self._status_at, self._status_shown = now, status

    @staticmethod
    def _width() -> int:
        return max(shutil.get_terminal_size().columns - 1, 20)  # one line: a wrapped one cannot be redrawn

    def _clear_status(self) -> None:
        if self._tty and self._status_shown:
            self._term.write("\r" + " " * min(len(self._status_shown), self._width()) + "\r")
        if self._tty:
            self._status_shown = ""
