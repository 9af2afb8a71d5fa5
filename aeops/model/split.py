"""The train/validation split by key, without TensorFlow (tf.data and the JAX path both use it).

SHA-256 of the key - stable across runs, machines and Python versions, unlike ``hash()`` - so an image never
moves between the two sets when shards are re-cut or re-ordered.
"""

from __future__ import annotations

import hashlib


def split_fraction(key: bytes) -> float:
    """A key's place in [0, 1): the first 8 bytes of its SHA-256. Below ``validation_fraction`` = validation."""
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2.0**64
