"""Run a command as a benchmark stage: wall time, peak memory of its whole process tree, optional repeats."""

from __future__ import annotations

import contextlib
import logging
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field

import psutil

log = logging.getLogger(__name__)


@dataclass
class StageResult:
    stage: str
    command: list[str]
    seconds: list[float] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    rows: int | None = None
    returncode: int = 0
    note: str = ""

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")

    @property
    def rows_per_second(self) -> float | None:
        if self.rows is None or not self.seconds or self.median_seconds == 0:
            return None
        return self.rows / self.median_seconds

    def as_dict(self) -> dict:
        d = asdict(self)
        d["median_seconds"] = round(self.median_seconds, 3)
        d["rows_per_second"] = round(self.rows_per_second, 1) if self.rows_per_second else None
        return d


class TreeMemorySampler:
    """Samples the summed RSS of a process and all its descendants every `interval` seconds; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.2):
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        total = 0
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += p.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


# a stage whose run takes longer than this is not repeated: the median is for short, noisy stages
LONG_STAGE_SECONDS = 180.0


def run_stage(stage: str, command: list[str], env: dict[str, str] | None = None, repeat: int = 1,
              log_path=None, before_each=None, long_stage_seconds: float = LONG_STAGE_SECONDS) -> StageResult:
    """Run `command` up to `repeat` times (calling before_each() before each run); time it and sample its memory.

    Repeats stop after a run longer than `long_stage_seconds` (noted in the result): a ten-minute stage varies
    by a few percent, and repeating it would double the benchmark's duration for little.
    """
    result = StageResult(stage, command)
    for i in range(repeat):
        if before_each:
            before_each()
        out = open(log_path, "a") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
        t0 = time.perf_counter()
        proc = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT)
        with TreeMemorySampler(proc.pid) as sampler:
            rc = proc.wait()
        elapsed = time.perf_counter() - t0
        if log_path:
            out.close()
        result.seconds.append(elapsed)
        result.peak_rss_mb = max(result.peak_rss_mb, sampler.peak / 2**20)
        result.returncode = rc
        log.info("  %-12s run %d/%d: %.1f s, peak %.0f MB%s", stage, i + 1, repeat, elapsed, sampler.peak / 2**20,
                 "" if rc == 0 else f", FAILED (exit {rc}; see {log_path})")
        if rc != 0:
            break
        if i + 1 < repeat and elapsed > long_stage_seconds:
            result.note = f"ran once of {repeat}: a run takes over {long_stage_seconds:.0f} s"
            log.info("  %-12s not repeated (%s)", stage, result.note)
            break
    return result


def c360_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "c360.cli", *args]
