"""Progress a person can follow: a share of the input's bytes with rate and ETA, from worker processes too."""

from __future__ import annotations

import io
import json
import multiprocessing
import re

import pytest

from aeops import progress, storage
from aeops.progress import Meter
from pipelines import augment
from tests import shards


class Terminal(io.StringIO):
    """What the meter writes to when stderr is a terminal."""

    def isatty(self) -> bool:
        return True


def _worker(folder: str, release) -> None:
    progress.add(folder, bytes=500, records=3, variants=9)
    progress.flush(folder)
    release.wait(30)  # stay alive: the meter must see the counts while the worker runs
    progress.add(folder, bytes=500, records=2, dead=1)
    progress.flush(folder)


def test_meter_reads_what_another_process_counted(tmp_path):
    context = multiprocessing.get_context("spawn")
    release = context.Event()
    worker = context.Process(target=_worker, args=(str(tmp_path), release))
    log = io.StringIO()
    with Meter(str(tmp_path), 1000, stream=log, every=0.05):
        worker.start()
        for _ in range(600):
            if "50%" in log.getvalue():
                break
            worker.join(0.05)
        release.set()
        worker.join(30)
    lines = log.getvalue().splitlines()
    middle = next(line for line in lines if "50%" in line)
    assert re.fullmatch(r"augment: 50% 500 of 1,000 bytes read, 3 records in, 9 variants written, 0 dead letters; "
                        r"[\d.]+ records/s, ETA \d+:\d\d", middle), middle
    assert "\r" not in log.getvalue()  # not a terminal: plain lines, no bar
    assert re.fullmatch(r"augment: 100% of the input read in 0:\d\d: 1,000 of 1,000 bytes read, 5 records in, "
                        r"9 variants written, 1 dead letters", lines[-1]), lines[-1]


def test_a_terminal_gets_a_live_bar(tmp_path):
    progress.add(str(tmp_path), bytes=3 * 2**20, records=7)
    progress.flush(str(tmp_path))
    screen = Terminal()
    meter = Meter(str(tmp_path), 12 * 2**20, stream=screen)
    bar = meter.line(meter.read())
    assert bar.startswith("\r[######..................]  25% 3.0 of 12.0 MiB read, 7 records in")
    assert re.search(r"; [\d.]+ records/s, ETA \d+:\d\d", bar) and bar.endswith("\033[K")


@pytest.mark.parametrize("mode", ["multi_processing", "in_memory"])
def test_augment_reports_progress_totals_equal_to_the_manifest(tmp_path, capsys, mode):
    """With --direct_running_mode=multi_processing the stages run in other processes: the totals still add up."""
    good = shards.good_images()
    shards.write(tmp_path / "in-a.tfrecord", [shards.example(good[0]), shards.example(b"not an image")])
    shards.write(tmp_path / "in-b.tfrecord", [shards.example(good[1]), shards.example(good[2])])
    root = str(tmp_path / "out")
    argv = ["--config", "configs/local.yaml", "--input", str(tmp_path / "in-*.tfrecord"), "--output", root,
            "--set", "inference.enabled=false", f"--direct_running_mode={mode}", "--direct_num_workers=2"]
    assert augment.run(argv) == 0
    version = storage.read_bytes(storage.join(root, "LATEST")).decode().strip()
    manifest = json.loads(storage.read_bytes(storage.join(root, version, "manifest.json")))
    size = sum(item["size"] for item in manifest["inputs"])
    final = [line for line in capsys.readouterr().err.splitlines() if "of the input read" in line]
    assert len(final) == 1, final
    assert f"{size / 1024:,.1f} of {size / 1024:,.1f} KiB read" in final[0]
    assert (f"{manifest['records_in']} records in, {manifest['records_out']} variants written, "
            f"{manifest['dead_letter']['entries']} dead letters") in final[0]
