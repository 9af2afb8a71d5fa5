"""Per-variant random generators that are the same in every process, runner and machine.

The generator for one (global seed, source key, variant) is seeded from a SHA-256 of the three, never from
Python's ``hash()`` (salted per process), so a retried or re-sharded record draws the same parameters.
Each op then gets its own child generator (``SeedSequence.spawn``): draws are uncorrelated across ops,
and adding an op to the end of a config does not change what the ops before it draw.

Streams are stable for a fixed numpy version (numpy pins ``Generator`` distributions per release).
"""

from __future__ import annotations

import hashlib

import numpy as np

_DOMAIN = b"aeops.variant.v1\0"


def variant_entropy(seed: int, key: bytes, variant: int) -> int:
    """A 256-bit integer from (seed, key, variant); fixed-width fields so no two triples collide by concatenation."""
    if seed < 0 or variant < 0:
        raise ValueError(f"seed and variant must be >= 0, got seed={seed}, variant={variant}")
    digest = hashlib.sha256(
        _DOMAIN + seed.to_bytes(8, "big") + variant.to_bytes(8, "big") + bytes(key)
    ).digest()
    return int.from_bytes(digest, "big")


def variant_rng(seed: int, key: bytes, variant: int) -> np.random.Generator:
    """The generator of one augmented variant; its children (:func:`children`) draw the ops' parameters."""
    return _generator(np.random.SeedSequence(variant_entropy(seed, key, variant)))


def children(rng: np.random.Generator, count: int) -> list[np.random.Generator]:
    """One independent child generator per op of a composition, spawned from ``rng``'s seed sequence."""
    return rng.spawn(count)


def variant_children(seed: int, key: bytes, variant: int, count: int) -> list[np.random.Generator]:
    """Exactly ``children(variant_rng(seed, key, variant), count)``, without building the parent generator,
    which the top level of a pipeline never draws from: a third of the per-record seeding cost."""
    entropy = variant_entropy(seed, key, variant)
    return [_generator(np.random.SeedSequence(entropy, spawn_key=(index,))) for index in range(count)]


def _generator(sequence: np.random.SeedSequence) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(sequence))


def noise_seed(rng: np.random.Generator) -> int:
    """A seed an op records in its lineage instead of the noise it generates (fits a JSON/int64 field)."""
    return int(rng.integers(0, 2**53))
