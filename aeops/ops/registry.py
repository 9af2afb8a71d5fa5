"""The op registry: ``@register("name")`` on an :class:`Op` subclass; names are what configs write.

An op is a factory (as in big_vision): the class checks and normalises its config when the pipeline is
built, then draws parameters per variant and hands them to a pure kernel of :mod:`aeops.ops.functional`.
A geometric op also names its kernel's ``*_affine`` twin, which moves the spatial targets with the pixels.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from aeops.ops.params import Param, check_p, fires
from aeops.ops.targets import Targets, transform

_OPS: dict[str, type["Op"]] = {}


class Op:
    """A configured op. Subclasses declare ``params`` and ``apply``; ``draw`` defaults to every declared
    parameter drawn (ranges) or copied (settings) in declaration order."""

    name: ClassVar[str]
    params: ClassVar[dict[str, Param]] = {}
    default_p: ClassVar[float] = 1.0
    affine: ClassVar[Callable[..., Any] | None] = None  # geometric ops: ``F.*_affine(shape, **params)``

    def __init__(self, **config: Any):
        self.p = check_p(config.pop("p", self.default_p))
        unknown = sorted(set(config) - set(self.params))
        if unknown:
            allowed = ", ".join(["p", *self.params])
            raise ValueError(f"unknown parameter {unknown[0]!r}; allowed: {allowed}")
        self.config = {name: spec.check(name, config.get(name, spec.default)) for name, spec in self.params.items()}

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        """Concrete JSON-able parameters for one image of ``shape``."""
        return {name: spec.draw(rng, self.config[name]) for name, spec in self.params.items()}

    @staticmethod
    def apply(image: np.ndarray, **params: Any) -> np.ndarray:
        raise NotImplementedError

    @classmethod
    def move(cls, targets: Targets | None, params: dict[str, Any]) -> Targets | None:
        """``targets`` moved as :meth:`apply` moves the pixels: by the op's affine; other ops leave them be."""
        if targets is None or cls.affine is None:
            return targets
        return transform(targets, cls.affine(targets.shape, **_geometric(cls.affine, params)))

    def __call__(self, image: np.ndarray, rng: np.random.Generator, targets: Targets | None = None):
        """Fire with probability ``p``, draw, apply: (image, targets, lineage entries of what was applied)."""
        if not fires(rng, self.p):
            return image, targets, []
        params = self.draw(rng, image.shape)
        return self.apply(image, **params), self.move(targets, params), [{"op": self.name, "params": params}]


def _geometric(affine: Callable[..., Any], params: dict[str, Any]) -> dict[str, Any]:
    """The drawn parameters the affine takes (not the pixel-only ones: interpolation, border, fill)."""
    return {name: params[name] for name in _parameters(affine)}


@functools.cache
def _parameters(function: Callable[..., Any]) -> tuple[str, ...]:
    return tuple(inspect.signature(function).parameters)[1:]


def register(name: str):
    """Class decorator: make an :class:`Op` subclass available to configs as ``op: name``."""

    def decorate(cls: type[Op]) -> type[Op]:
        if name in _OPS:
            raise ValueError(f"op {name!r} is already registered by {_OPS[name].__module__}.{_OPS[name].__qualname__}")
        cls.name = name
        _OPS[name] = cls
        return cls

    return decorate


def lookup(name: Any, also: tuple[str, ...] = ()) -> type[Op]:
    """The class registered as ``name``; otherwise a ``ValueError`` listing every name (and ``also``)."""
    if name not in _OPS:
        raise ValueError(f"unknown op {name!r}; known ops: {', '.join(names() + list(also))}")
    return _OPS[name]


def names() -> list[str]:
    """Every registered op, sorted."""
    return sorted(_OPS)
