"""Declared op parameters: each checks its config value once, at build time, and draws it per variant.

A :class:`Range` is drawn uniformly per variant; the others are settings copied into every variant's
lineage unchanged, so a lineage entry alone is enough to replay the op. Errors are ``ValueError`` lines
naming what is allowed; :func:`aeops.ops.build` prefixes them with the op's place in the config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Range:
    """``[low, high]`` within ``[lo, hi]``; a fixed value is ``[v, v]``; ``integer`` draws both ends inclusive."""

    default: tuple[float, float]
    lo: float
    hi: float
    integer: bool = False

    def check(self, name: str, value: Any) -> tuple[float, float]:
        kind = "integers" if self.integer else "numbers"
        example = f"e.g. {name}: [{self.default[0]}, {self.default[1]}]"
        if not isinstance(value, list | tuple) or len(value) != 2 or not all(_is_number(v, self.integer) for v in value):
            raise ValueError(f"{name} must be [low, high], two {kind} ({example}; a fixed value is [v, v])")
        low, high = value
        if low > high:
            raise ValueError(f"{name} must be [low, high] with low <= high, got {list(value)}")
        if low < self.lo or high > self.hi:
            raise ValueError(f"{name} = {list(value)} is out of range; allowed within [{self.lo}, {self.hi}]")
        cast = int if self.integer else float
        return cast(low), cast(high)

    def draw(self, rng: np.random.Generator, value: tuple[float, float]) -> float | int:
        low, high = value
        if self.integer:
            return int(rng.integers(low, high, endpoint=True))
        return float(rng.uniform(low, high))


@dataclass(frozen=True)
class Choice:
    default: str
    choices: tuple[str, ...]

    def check(self, name: str, value: Any) -> str:
        if value not in self.choices:
            raise ValueError(f"{name} = {value!r} is not allowed; choose one of {', '.join(self.choices)}")
        return value

    def draw(self, rng: np.random.Generator, value: str) -> str:
        return value


@dataclass(frozen=True)
class Flag:
    default: bool

    def check(self, name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {value!r}")
        return value

    def draw(self, rng: np.random.Generator, value: bool) -> bool:
        return value


@dataclass(frozen=True)
class Fill:
    """A fill colour: one gray level 0-255 or ``[r, g, b]``."""

    default: int | list[int] = 0

    def check(self, name: str, value: Any) -> int | list[int]:
        if _is_number(value, True) and 0 <= value <= 255:
            return int(value)
        if isinstance(value, list | tuple) and len(value) == 3 and all(_is_number(v, True) and 0 <= v <= 255 for v in value):
            return [int(v) for v in value]
        raise ValueError(f"{name} must be a gray level 0-255 or [r, g, b], got {value!r}")

    def draw(self, rng: np.random.Generator, value: int | list[int]) -> int | list[int]:
        return value


Param = Range | Choice | Flag | Fill


def check_p(value: Any) -> float:
    if not _is_number(value, False) or not 0 <= value <= 1:
        raise ValueError(f"p = {value!r} must be a probability between 0 and 1")
    return float(value)


def _is_number(value: Any, integer: bool) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (not integer and isinstance(value, float) and np.isfinite(value))


def fires(rng: np.random.Generator, p: float) -> bool:
    """Whether an op or group of probability ``p`` applies; ``p == 1`` draws nothing, keeping streams short."""
    return p >= 1 or rng.random() < p
