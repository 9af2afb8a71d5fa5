"""The run's accounting: per-output figures, the dead-letter tally and the reconciliation check.

Small values that Beam combines globally into the manifest; nothing here touches pixels but
:meth:`Stats.of`, which measures one restored output against the model's input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import numpy as np

from aeops import metrics
from aeops.errors import AeopsError
from aeops.inference import bucket_shape

PSNR_CAP = 100.0  # dB; identical images have infinite PSNR, which JSON cannot hold


@dataclass(frozen=True)
class Stats:
    """Per-output figures, summed by :class:`StatsCombine` into the manifest's ``metrics``."""

    outputs: int = 0
    restored: int = 0
    psnr_sum: float = 0.0
    psnr_min: float = float("inf")
    psnr_max: float = float("-inf")
    ssim_count: int = 0
    ssim_sum: float = 0.0
    ssim_min: float = float("inf")
    ssim_max: float = float("-inf")
    real_pixels: int = 0
    padded_pixels: int = 0

    @classmethod
    def of(cls, augmented: np.ndarray, restored: np.ndarray | None, pad_multiple: int) -> "Stats":
        if restored is None:
            return cls(outputs=1)
        psnr = min(metrics.psnr(augmented, restored), PSNR_CAP)
        height, width = bucket_shape(augmented.shape, pad_multiple)
        area = augmented.shape[0] * augmented.shape[1]
        if min(augmented.shape[:2]) < metrics.SSIM_MIN_SIDE:  # too small for any SSIM window
            return cls(1, 1, psnr, psnr, psnr, real_pixels=area, padded_pixels=height * width)
        ssim = metrics.ssim(augmented, restored)
        return cls(1, 1, psnr, psnr, psnr, 1, ssim, ssim, ssim, area, height * width)

    def __add__(self, other: "Stats") -> "Stats":
        return Stats(
            self.outputs + other.outputs, self.restored + other.restored, self.psnr_sum + other.psnr_sum,
            min(self.psnr_min, other.psnr_min), max(self.psnr_max, other.psnr_max),
            self.ssim_count + other.ssim_count, self.ssim_sum + other.ssim_sum,
            min(self.ssim_min, other.ssim_min), max(self.ssim_max, other.ssim_max), self.real_pixels + other.real_pixels, self.padded_pixels + other.padded_pixels,
        )

    def summary(self) -> dict[str, Any]:
        n = self.restored
        return {
            "outputs": self.outputs,
            "restored": n,
            "psnr": {"mean": self.psnr_sum / n, "min": self.psnr_min, "max": self.psnr_max, "count": n} if n else None,
            "ssim": {"mean": self.ssim_sum / self.ssim_count, "min": self.ssim_min, "max": self.ssim_max,
                     "count": self.ssim_count} if self.ssim_count else None,
            "padding_overhead": (self.padded_pixels / self.real_pixels - 1.0) if self.real_pixels else 0.0,
        }


class StatsCombine(beam.CombineFn):
    def create_accumulator(self):
        return Stats()

    def add_input(self, accumulator, stats):
        return accumulator + stats

    def merge_accumulators(self, accumulators):
        return sum(accumulators, Stats())

    def extract_output(self, accumulator):
        return accumulator


class DeadTally(beam.CombineFn):
    """Dead rows -> {entries, variants, by_stage, by_reason}: the manifest's dead-letter section."""

    def create_accumulator(self):
        return {"entries": 0, "variants": 0, "by_stage": {}, "by_reason": {}}

    def add_input(self, tally, dead):
        slug = f"{dead.stage}/{dead.reason.split(':', 1)[0]}"
        tally["entries"] += 1
        tally["variants"] += dead.variants
        tally["by_stage"][dead.stage] = tally["by_stage"].get(dead.stage, 0) + 1
        tally["by_reason"][slug] = tally["by_reason"].get(slug, 0) + 1
        return tally

    def merge_accumulators(self, tallies):
        merged = self.create_accumulator()
        for tally in tallies:
            merged["entries"] += tally["entries"]
            merged["variants"] += tally["variants"]
            for section in ("by_stage", "by_reason"):
                for name, n in tally[section].items():
                    merged[section][name] = merged[section].get(name, 0) + n
        return merged

    def extract_output(self, tally):
        return tally


def raise_unless_reconciled(manifest: dict) -> None:
    """``records_in x variants = records_out + sum(dead variants)``, or the run fails loudly."""
    expected = manifest["records_in"] * manifest["variants"]
    actual = manifest["records_out"] + manifest["dead_letter"]["variants"]
    if expected != actual:
        raise AeopsError(
            f"counts do not reconcile: {manifest['records_in']} records x {manifest['variants']} variants = {expected}, "
            f"but {manifest['records_out']} written + {manifest['dead_letter']['variants']} dead = {actual}",
            reason="unreconciled",
        )


def publish_gate(manifest: dict, max_dead_fraction: float) -> dict:
    """Whether a reconciled run may be published (CONTRACT §4): some output, and at most ``max_dead_fraction``
    of its outputs dead-lettered. The result goes into the manifest as ``gate``; its ``reason`` is the line
    a user reads when the run is not published."""
    expected = manifest["records_in"] * manifest["variants"]
    dead = manifest["dead_letter"]["variants"]
    fraction = dead / expected if expected else 0.0
    if manifest["records_out"] == 0:
        reason = (f"no output: {manifest['records_in']} records in, all {dead} outputs dead-lettered" if expected
                  else "no output: the input files hold no records")
    elif fraction > max_dead_fraction:
        reason = (f"{dead} of {expected} outputs dead-lettered ({fraction:.1%}), above "
                  f"publish.max_dead_fraction = {max_dead_fraction:g}")
    else:
        reason = None
    return {"passed": reason is None, "reason": reason, "dead_fraction": fraction,
            "max_dead_fraction": max_dead_fraction}


def records_line(manifest: dict) -> str:
    """The reconciliation as a person reads it, the way a run's summary and ``aeops stats`` print it."""
    dead = manifest.get("dead_letter") or {}
    return (f"  records   {manifest.get('records_in')} in x {manifest.get('variants')} variants = "
            f"{manifest.get('records_out')} written + {dead.get('variants')} in {dead.get('entries')} dead letters")
