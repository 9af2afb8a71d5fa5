"""The run's accounting: a run whose counts do not add up fails and publishes nothing (CONTRACT §4)."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pytest

from aeops import storage
from aeops.accounting import DeadTally, Stats, raise_unless_reconciled
from aeops.config import PipelineConfig
from aeops.errors import AeopsError
from aeops.publish import MANIFEST, Publisher
from aeops.stages import Dead, Finalize, now
from pipelines.augment import translate


def manifest(records_in: int, variants: int, records_out: int, dead_variants: int) -> dict:
    return {"records_in": records_in, "variants": variants, "records_out": records_out,
            "dead_letter": {"variants": dead_variants}}


@pytest.mark.parametrize("records_out, dead_variants", [(6, 0), (4, 2), (0, 6)])
def test_counts_that_add_up_pass(records_out, dead_variants):
    raise_unless_reconciled(manifest(3, 2, records_out, dead_variants))


@pytest.mark.parametrize("records_out, dead_variants", [(5, 0), (6, 1), (4, 1), (0, 0), (7, 0)])
def test_counts_that_do_not_add_up_fail_naming_both_sides(records_out, dead_variants):
    with pytest.raises(AeopsError) as info:
        raise_unless_reconciled(manifest(3, 2, records_out, dead_variants))
    assert info.value.reason == "unreconciled" and info.value.exit_code == 1
    actual = records_out + dead_variants
    assert str(info.value) == (f"counts do not reconcile: 3 records x 2 variants = 6, but {records_out} written + "
                               f"{dead_variants} dead = {actual}")


def test_dead_tally_counts_entries_variants_stages_and_reasons():
    rows = [Dead(b"a", "f", "decode", "truncated: x", 3), Dead(b"b", "f", "infer", "TypeError: y: z", 1),
            Dead(b"c", "g", "decode", "truncated: z", 3)]
    tally = DeadTally()
    halves = [tally.add_input(tally.add_input(tally.create_accumulator(), rows[0]), rows[1]),
              tally.add_input(tally.create_accumulator(), rows[2])]
    assert tally.extract_output(tally.merge_accumulators(halves)) == {
        "entries": 3, "variants": 7, "by_stage": {"decode": 2, "infer": 1},
        "by_reason": {"decode/truncated": 2, "infer/TypeError": 1}}


def test_stats_sum_and_padding_overhead():
    image = np.zeros((30, 40, 3), np.uint8)
    restored = image.copy()
    restored[0, 0] = 1
    total = Stats.of(image, restored, 32) + Stats.of(image, None, 32) + Stats.of(image, image, 32)
    summary = total.summary()
    assert (summary["outputs"], summary["restored"]) == (3, 2)
    assert summary["psnr"]["max"] == 100.0 and summary["psnr"]["min"] < 100.0
    assert summary["padding_overhead"] == pytest.approx(32 * 64 / (30 * 40) - 1)  # 30x40 rides as 32x64
    assert summary["ssim"]["count"] == 2 and summary["ssim"]["max"] == pytest.approx(1.0)


def test_images_too_small_for_ssim_count_for_psnr_only():
    tiny = np.zeros((6, 40, 3), np.uint8)  # below the smallest SSIM window on one side
    stats = Stats.of(tiny, tiny + 1, 8)
    assert (stats.restored, stats.ssim_count) == (1, 0) and stats.psnr_sum == pytest.approx(48.13, abs=0.01)
    assert (stats.real_pixels, stats.padded_pixels) == (240, 320)
    assert stats.summary()["ssim"] is None and Stats().summary()["psnr"] is None


def finalize(root: str, records: int, outputs: int, dead: list[Dead]):
    """Beam's Finalize stage on hand-made counts: ``records`` read x 2 variants against what was written."""
    with Publisher(root) as publisher:
        version, token = publisher.prepare("v-0123456789ab", publisher.latest().token)
        context = {"root": root, "version": version, "token": token, "keep": 0, "fingerprint": "0123456789ab",
                   "config": PipelineConfig().model_dump(mode="json"), "inputs": [], "runner": "DirectRunner",
                   "model": None, "variants": 2,
                   "started": now(), "aeops_version": "test"}
        with beam.Pipeline() as pipeline:
            def made(name, items):
                return pipeline | name >> beam.Create(items, reshuffle=False)

            parts = {
                "records": made("Records", [("in.tfrecord", b"%d" % i) for i in range(records)]),
                "damaged": made("Damaged", []),
                "outputs": made("Outputs", [b"out-%d" % i for i in range(outputs)]),
                "dead": made("Dead", dead),
                "stats": made("Stats", [Stats(outputs=1)] * outputs),
                "samples": made("Samples", []),
                "data_files": made("DataFiles", []),
                "dead_files": made("DeadFiles", []),
                "statistics": made("Statistics", []),
            }
            parts | "Finalize" >> Finalize(context, samples=0)
    return version


def test_a_run_that_adds_up_is_published(tmp_path):
    root = str(tmp_path / "out")
    version = finalize(root, records=3, outputs=5, dead=[Dead(b"x", "in.tfrecord", "encode", "error: x", 1)])
    assert storage.read_bytes(storage.join(root, "LATEST")).decode().strip() == version
    assert storage.exists(storage.join(root, version, MANIFEST))


def test_a_run_that_loses_a_record_fails_and_publishes_nothing(tmp_path):
    root = str(tmp_path / "out")
    with pytest.raises(Exception) as info:
        finalize(root, records=3, outputs=5, dead=[])
    error = translate(info.value)
    assert str(error) == "counts do not reconcile: 3 records x 2 variants = 6, but 5 written + 0 dead = 5"
    assert not storage.exists(storage.join(root, "LATEST"))
    assert not storage.exists(storage.join(root, "v-0123456789ab", MANIFEST))


def test_summary_means_are_the_sums_over_the_counts():
    """Merged PSNR and SSIM means are sum / count, both summed across workers (mutation survivors of the merge)."""
    first = Stats(outputs=1, restored=1, psnr_sum=30.0, psnr_min=30.0, psnr_max=30.0,
                  ssim_count=1, ssim_sum=0.5, ssim_min=0.5, ssim_max=0.5)
    second = Stats(outputs=1, restored=1, psnr_sum=40.0, psnr_min=40.0, psnr_max=40.0,
                   ssim_count=1, ssim_sum=0.75, ssim_min=0.75, ssim_max=0.75)
    summary = (first + second).summary()
    assert summary["psnr"] == {"mean": 35.0, "min": 30.0, "max": 40.0, "count": 2}
    assert summary["ssim"] == {"mean": 0.625, "min": 0.5, "max": 0.75, "count": 2}
    only_ssim = (Stats() + Stats(outputs=1, restored=1, ssim_count=1, ssim_sum=0.5)).summary()
    assert only_ssim["ssim"]["mean"] == 0.5  # an empty Stats adds nothing
