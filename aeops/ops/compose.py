"""Composition: a pipeline of ops applied in order, ``one_of`` / ``some_of`` groups, augment and replay.

Every step of a composition gets its own child generator, spawned before any step draws, so what one op
draws never depends on what another op drew or whether it fired. Lineage is flat: groups record only the
ops they actually applied, so :func:`replay` needs nothing but the registry. Spatial targets
(:class:`~aeops.ops.targets.Targets`), when given, travel with the image through every step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aeops.ops.params import Range, check_p, fires
from aeops.ops.registry import lookup
from aeops.ops.targets import Targets
from aeops.seeding import children, variant_children

Lineage = list[dict[str, Any]]
GROUPS = ("one_of", "some_of")


class Pipeline:
    """Steps (ops or groups) applied in order; ``pipeline(image, rng, targets) -> (image, targets, lineage)``."""

    def __init__(self, steps: list):
        self.steps = tuple(steps)

    def __call__(self, image: np.ndarray, rng: np.random.Generator, targets: Targets | None = None):
        return _run(self.steps, range(len(self.steps)), image, targets, children(rng, len(self.steps)))

    def __len__(self) -> int:
        return len(self.steps)


class OneOf:
    """With probability ``p``, one of ``steps``, picked uniformly; the pick still fires with its own ``p``."""

    def __init__(self, steps: list, p: float):
        self.steps, self.p = tuple(steps), p

    def __call__(self, image: np.ndarray, rng: np.random.Generator, targets: Targets | None = None):
        if not fires(rng, self.p):
            return image, targets, []
        generators = children(rng, len(self.steps))
        return _run(self.steps, [int(rng.integers(len(self.steps)))], image, targets, generators)


class SomeOf:
    """With probability ``p``, ``n`` of ``steps`` (drawn from the range ``n``) without repeats, applied in
    config order, each firing with its own ``p``."""

    def __init__(self, steps: list, p: float, n: tuple[int, int]):
        self.steps, self.p, self.n = tuple(steps), p, n

    def __call__(self, image: np.ndarray, rng: np.random.Generator, targets: Targets | None = None):
        if not fires(rng, self.p):
            return image, targets, []
        generators = children(rng, len(self.steps))
        count = int(rng.integers(self.n[0], self.n[1], endpoint=True))
        picked = sorted(rng.choice(len(self.steps), size=count, replace=False).tolist())
        return _run(self.steps, picked, image, targets, generators)


def _run(steps: tuple, picked, image: np.ndarray, targets: Targets | None, generators: list):
    """Apply ``steps[i]`` for ``i`` in ``picked`` with ``generators[i]``: a step's child generator never
    depends on which other steps were picked. Returns (image, targets, lineage)."""
    lineage: Lineage = []
    for index in picked:
        image, targets, entries = steps[index](image, generators[index], targets)
        lineage += entries
    return image, targets, lineage


# --- building from a config ------------------------------------------------------------------------


def build(specs: list[dict[str, Any]]) -> Pipeline:
    """``[{op, p, ...ranges}, ...]`` -> a :class:`Pipeline`, every op and value checked now.

    A mistake raises ``ValueError`` with one line naming its place, e.g.
    ``ops[2] (rotate): unknown parameter 'angel'; allowed: p, angle, interpolation, border_mode, fill, output_size``.
    """
    return Pipeline(_steps(specs, "ops"))


def _steps(specs: Any, where: str) -> list:
    if not isinstance(specs, list | tuple):
        raise ValueError(f"{where} must be a list of {{op: NAME, ...}} mappings, got {type(specs).__name__}")
    return [_step(spec, f"{where}[{index}]") for index, spec in enumerate(specs)]


def _step(spec: Any, where: str):
    if not isinstance(spec, dict) or "op" not in spec:
        raise ValueError(f"{where}: expected a mapping with an 'op' key, e.g. {{op: hflip, p: 0.5}}, got {spec!r}")
    config = dict(spec)
    name = config.pop("op")
    if name in GROUPS:
        return _group(name, config, where)
    try:
        return lookup(name, also=GROUPS)(**config)
    except ValueError as exc:
        raise ValueError(f"{where} ({name}): {exc}") from None


def _group(name: str, config: dict[str, Any], where: str):
    allowed = ("p", "ops") if name == "one_of" else ("p", "n", "ops")
    unknown = sorted(set(config) - set(allowed))
    if unknown or not config.get("ops"):
        problem = f"unknown parameter {unknown[0]!r}" if unknown else "needs a non-empty 'ops' list"
        raise ValueError(f"{where} ({name}): {problem}; allowed: {', '.join(allowed)}")
    steps = _steps(config["ops"], f"{where}.ops")
    try:
        p = check_p(config.get("p", 1.0))
        if name == "one_of":
            return OneOf(steps, p)
        n = Range((1, len(steps)), 0, len(steps), integer=True)
        return SomeOf(steps, p, n.check("n", config.get("n", list(n.default))))
    except ValueError as exc:
        raise ValueError(f"{where} ({name}): {exc}") from None


# --- the two entry points of the Beam stage ------------------------------------------------------


def augment(pipeline: Pipeline, image: np.ndarray, seed: int, key: bytes, variant: int, targets: Targets | None = None):
    """Variant ``variant`` of the source ``key``: ``(image, lineage)`` of the ops actually applied, or
    ``(image, lineage, targets)`` when the source's spatial ``targets`` are given.

    The same (seed, key, variant) gives the same pixels and lineage in any process; variant 0 is the
    source itself, returned untouched with an empty lineage.
    """
    _check_image(image, targets)
    steps = pipeline.steps
    if variant == 0:
        out = image, targets, []
    else:
        out = _run(steps, range(len(steps)), image, targets, variant_children(seed, key, variant, len(steps)))
    return (out[0], out[2]) if targets is None else (out[0], out[2], out[1])


def replay(image: np.ndarray, lineage: Lineage, targets: Targets | None = None):
    """Re-apply a lineage (as :func:`augment` returned it, or after a JSON round trip): the same pixels,
    or ``(image, targets)`` moved exactly as :func:`augment` moved them when ``targets`` are given."""
    _check_image(image, targets)
    moved = targets
    for index, entry in enumerate(lineage):
        name = entry.get("op") if isinstance(entry, dict) else None
        try:
            op = lookup(name)
            image, moved = op.apply(image, **entry["params"]), op.move(moved, entry["params"])
        except (TypeError, KeyError, ValueError) as exc:
            raise ValueError(f"lineage[{index}] ({name}): cannot replay: {exc}") from None
    return image if targets is None else (image, moved)


def _check_image(image: np.ndarray, targets: Targets | None) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shown = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"expected a uint8 (H, W, 3) RGB image, got {shown}")
    if targets is not None and tuple(targets.shape) != image.shape[:2]:
        raise ValueError(f"targets are for a {targets.shape} image, the image is {image.shape[:2]}")
