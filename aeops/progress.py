"""Progress of a local run as a share of the input's bytes, with rate and ETA, on stderr.

The total is known before the run starts: the fingerprint lists every input file's size. The stages add what they
did (input bytes and records read, output variants written, dead letters) to a :class:`Tally`, one per worker
process, which every half second and at the end of each bundle rewrites one small JSON file in a folder the driver
made. The driver's :class:`Meter` sums the folder's files and prints. Files, not Beam metrics, because they work
the same in every local mode: the in-process DirectRunner reports its metrics only when the job ends, and with
``--direct_running_mode=multi_processing`` the stages run in other processes that share nothing with the driver
but the disk. On Dataflow the same figures are the Beam counters of :mod:`aeops.stages`, in the console.

Units, as in the run's summary: *records* are input records (frames read, good or damaged), *variants* are
outputs (``records in x variants = variants written + dead-letter variants``).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid

FIELDS = ("bytes", "records", "variants", "dead")
_UNITS = (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10), ("bytes", 1))  # the total's unit, for every figure
BAR = 24


class Tally:
    """This process's counts for one run, written to ``FOLDER/<pid>-<id>.json`` (one Tally per folder and process)."""

    _by_folder: dict[str, "Tally"] = {}
    _lock = threading.Lock()

    def __init__(self, folder: str, every: float = 0.5):
        self.path = os.path.join(folder, f"{os.getpid()}-{uuid.uuid4().hex[:8]}.json")
        self.every = every
        self.counts = dict.fromkeys(FIELDS, 0)
        self.written = 0.0

    @classmethod
    def of(cls, folder: str) -> "Tally":
        with cls._lock:
            if folder not in cls._by_folder:
                cls._by_folder[folder] = cls(folder)
            return cls._by_folder[folder]

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                self.counts[name] += n
            if time.monotonic() - self.written >= self.every:
                self._write()

    def flush(self) -> None:
        with self._lock:
            self._write()

    def _write(self) -> None:
        tmp = f"{self.path}.{threading.get_ident()}.tmp"
        try:
            with open(tmp, "w") as stream:
                json.dump(self.counts, stream)
            os.replace(tmp, self.path)  # the meter never reads half a file
        except OSError:  # the run is over and its folder gone: nobody is watching any more
            return
        self.written = time.monotonic()


def add(folder: str | None, **counts: int) -> None:
    """What a stage calls: a no-op when the run shows no progress (Dataflow, tests that build their own pipeline)."""
    if folder:
        Tally.of(folder).add(**counts)


def flush(folder: str | None) -> None:
    if folder:
        Tally.of(folder).flush()


class Meter:
    """The driver's side: sums the folder every ``every`` seconds and prints a live bar on a terminal, or a plain
    line (logs, CI, Airflow) less often; :meth:`stop` prints the final line."""

    def __init__(self, folder: str, total_bytes: int, stream=None, every: float | None = None):
        self.folder, self.total = folder, max(total_bytes, 1)
        self.unit, self.scale = next((unit, scale) for unit, scale in _UNITS if self.total >= scale or scale == 1)
        self.stream = stream or sys.stderr
        self.live = is_terminal(self.stream)
        self.every = every if every is not None else (0.5 if self.live else 15.0)
        self.started = time.monotonic()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="aeops-progress", daemon=True)

    def __enter__(self) -> "Meter":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop(finished=exc[0] is None)

    def read(self) -> dict[str, int]:
        totals = dict.fromkeys(FIELDS, 0)
        try:
            names = [name for name in os.listdir(self.folder) if name.endswith(".json")]
        except OSError:
            return totals
        for name in names:
            try:
                with open(os.path.join(self.folder, name)) as stream:
                    counts = json.load(stream)
            except (OSError, ValueError):
                continue
            for field in FIELDS:
                totals[field] += int(counts.get(field, 0))
        return totals

    def line(self, counts: dict[str, int], final: bool = False) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        share = min(counts["bytes"] / self.total, 1.0)
        rate = counts["bytes"] / elapsed
        figures = (f"{self._size(counts['bytes'])} of {self._size(self.total)} {self.unit} read, "
                   f"{counts['records']:,} records in, "
                   f"{counts['variants']:,} variants written, {counts['dead']:,} dead letters")
        if final:
            return f"augment: {share:.0%} of the input read in {clock(elapsed)}: {figures}"
        eta = clock((self.total - counts["bytes"]) / rate) if rate > 0 else "--:--"
        pace = f"{counts['records'] / elapsed:.2f} records/s, ETA {eta}"  # the rate the run's summary gives
        if self.live:
            filled = round(share * BAR)
            return f"\r[{'#' * filled}{'.' * (BAR - filled)}] {share:4.0%} {figures}; {pace}\033[K"
        return f"augment: {share:.0%} {figures}; {pace}"

    def _size(self, n: float) -> str:
        return f"{n / self.scale:,.1f}" if self.scale > 1 else f"{n:,.0f}"

    def _loop(self) -> None:
        while not self.done.wait(self.every):
            self._print(self.line(self.read()))

    def stop(self, finished: bool = True) -> None:
        self.done.set()
        if self.thread.is_alive():
            self.thread.join()
        if self.live:
            self._print("\r\033[K")
        if finished:
            self._print(self.line(self.read(), final=True) + "\n")

    def _print(self, text: str) -> None:
        self.stream.write(text if self.live or text.endswith("\n") else text + "\n")
        self.stream.flush()


def is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
