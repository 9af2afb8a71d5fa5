"""Progress on the terminal while the DirectRunner works (on Dataflow the same figures are Beam counters)."""

from __future__ import annotations

import sys
import threading
import time


class Progress:
    """Records done, rate and dead letters so far, on stderr every few seconds (DirectRunner only).

    One meter per process, shared by the stages' threads; on Dataflow the same figures are the Beam
    counters of :mod:`aeops.stages`.
    """

    _instance: "Progress | None" = None
    _lock = threading.Lock()

    def __init__(self, every: float = 3.0):
        self.started = time.monotonic()
        self.last = self.started
        self.every = every
        self.outputs = 0
        self.dead = 0

    @classmethod
    def shared(cls) -> "Progress":
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def advance(self, outputs: int = 0, dead: int = 0) -> None:
        with self._lock:
            self.outputs += outputs
            self.dead += dead
            now = time.monotonic()
            if now - self.last >= self.every:
                self.last = now
                rate = self.outputs / max(now - self.started, 1e-9)
                print(f"augment: {self.outputs} records written, {rate:.1f}/s, {self.dead} dead letters so far",
                      file=sys.stderr, flush=True)
