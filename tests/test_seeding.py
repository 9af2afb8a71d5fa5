"""Per-variant generators: stable across processes (no salted hash()), distinct per input, children as spawned."""

import subprocess
import sys

import numpy as np
import pytest

from aeops.seeding import children, noise_seed, variant_children, variant_entropy, variant_rng


def test_stable_value():
    # A golden number: if this changes, every published dataset's variants would change with it.
    assert f"{variant_entropy(1234, b'abc', 3):064x}"[:16] == GOLDEN


GOLDEN = "c092dc61439af481"


def test_same_draws_in_a_fresh_process_with_another_hash_seed():
    code = "from aeops.seeding import variant_rng; print(variant_rng(7, b'k', 2).integers(0, 2**62))"
    outs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={"PYTHONHASHSEED": salt}).stdout
        for salt in ("1", "2")
    }
    assert outs == {f"{variant_rng(7, b'k', 2).integers(0, 2**62)}\n"}


@pytest.mark.parametrize("other", [(1, b"k", 1), (0, b"j", 1), (0, b"k", 2), (0, b"k\0", 1)])
def test_distinct_inputs_give_distinct_generators(other):
    assert variant_rng(0, b"k", 1).random() != variant_rng(*other).random()


# Pairs of (seed, key, variant) that a variable-width encoding of the fields would run together into the same
# bytes: shortest big-endian integers (b"\1" + b"\1\2" == b"\1\1" + b"\2"), or decimal digits ("1" + "23" ==
# "12" + "3"), with the key appended after them or between them.
RUN_TOGETHER = [
    ((1, b"", 0x0102), (0x0101, b"", 2)),
    ((1, b"\2", 1), (1, b"", 0x0102)),
    ((0x0102, b"k", 3), (1, b"k", 0x0203)),
    ((1, b"", 23), (12, b"", 3)),
    ((12, b"3", 4), (1, b"23", 4)),
]


@pytest.mark.parametrize("a, b", RUN_TOGETHER)
def test_fixed_width_fields_do_not_collide(a, b):
    assert variant_entropy(*a) != variant_entropy(*b)


def test_every_byte_of_a_long_key_counts():
    key = bytes(range(256)) * 4 + b"tail"
    base = variant_entropy(3, key, 1)
    changed = {variant_entropy(3, key[:i] + bytes([key[i] ^ 1]) + key[i + 1:], 1) for i in range(len(key))}
    assert base not in changed and len(changed) == len(key)
    assert variant_entropy(3, key + b"\0", 1) != base and variant_entropy(3, key[:-1], 1) != base


def test_variant_children_equal_spawned_children():
    spawned = [g.random(3).tolist() for g in children(variant_rng(5, b"x", 4), 3)]
    direct = [g.random(3).tolist() for g in variant_children(5, b"x", 4, 3)]
    assert spawned == direct
    assert len({tuple(s) for s in spawned}) == 3


def test_negative_inputs_rejected():
    with pytest.raises(ValueError):
        variant_rng(-1, b"k", 1)


def test_noise_seeds_spread_over_their_whole_range():
    """Ops record a noise seed instead of the noise: seeds that repeat would give every variant the same noise."""
    seeds = [noise_seed(np.random.default_rng(i)) for i in range(200)]
    assert len(set(seeds)) == 200 and all(0 <= s < 2**53 for s in seeds)
    assert max(seeds) > 2**52  # the top bit of the 53 is used: seeds fit a JSON number exactly, and no fewer bits


def test_noise_seed_stable_value():
    # A golden number, like GOLDEN above: the noise ops record it, so a change would change every noisy variant.
    assert noise_seed(np.random.default_rng(1234)) == NOISE_GOLDEN


NOISE_GOLDEN = 8797329410709207


def test_seed_zero_and_variant_zero_are_valid_and_distinct():
    """Variant 0 (the source itself) is still seeded: the restore share of the original is drawn from it."""
    values = {variant_entropy(seed, b"k", variant) for seed in (0, 1) for variant in (0, 1)}
    assert len(values) == 4
    with pytest.raises(ValueError, match="variant=-1"):
        variant_entropy(0, b"k", -1)
