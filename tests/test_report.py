"""The run report (aeops.report): self-contained, escaped HTML with the run's numbers, a contact sheet of the
expected grid, both written locally and on gs://, and, where Chromium is installed, a real render."""

from __future__ import annotations

import collections
import re
import shutil
import subprocess

import numpy as np
import pytest
from scipy import ndimage
from google.cloud import storage as gcs

from aeops import codec, report
from aeops.report import CAPTION, GAP, HEADER, TILE, Sample, thumbnail, write_report
from tests.images import gradient

CHROMIUM = "/usr/bin/chromium"
HOSTILE_KEY = "<script>alert('key')</script>"
HOSTILE_REASON = 'decode/<img src=x onerror="alert(1)">'
MAGENTA = (255, 0, 255)
INPUT_BLUE, OUTPUT_PURPLE = (47, 111, 219), (142, 79, 209)


def _source(height: int = 200, width: int = 256) -> np.ndarray:
    """A gradient with a solid magenta block: a colour the page itself never uses, so a render can find it."""
    image = gradient(height, width)
    image[20:120, 20:120] = MAGENTA
    return image


def _samples() -> list[Sample]:
    source = _source()
    rotated = np.ascontiguousarray(np.rot90(source)[:180])  # a different shape, as geometric ops give
    return [
        Sample(
            "a" * 64,
            1,
            [{"op": "rotate", "params": {"angle": 12.5, "border": "reflect"}}, {"op": "hflip", "params": {}}],
            source,
            rotated,
            np.clip(rotated.astype(int) + 3, 0, 255).astype(np.uint8),
            psnr=38.617,
            ssim=0.98765,
        ),
        Sample(HOSTILE_KEY, 2, [{"op": "jpeg", "params": {"quality": 71}}], source, source, None),
    ]


def _manifest(**changes) -> dict:
    manifest = {
        "records_in": 17,
        "records_out": 64,
        "variants": 4,
        "fingerprint": "0123456789abcdef0123",
        "dead_letter": {
            "entries": 3,
            "variants": 4,
            "by_stage": {"decode": 2, "infer": 1},
            "by_reason": {HOSTILE_REASON: 2, "infer/ResourceExhausted": 1},
        },
        "config": {"augment": {"variants": 4}, "note": "</pre><b>x</b>"},
        "model": {"path": "aeops/pretrained/dae", "sha256": "feedface" * 8},
        "inputs": [{"path": f"/data/shard-{i:05d}.tfrecord", "size": 2048 * (i + 1)} for i in range(3)],
        "runner": "DirectRunner",
        "started": "2025-01-01T10:00:00+00:00",
        "finished": "2025-01-01T10:02:13+00:00",
        "aeops_version": "0.1.0",
        "metrics": {
            "throughput": {"records_per_s": 0.128, "outputs_per_s": 0.481, "seconds": 133.0},
            "psnr": {"mean": 32.1, "min": 28.4, "max": 36.0, "count": 48},
            "ssim": {"mean": 0.93, "min": 0.88, "max": 0.97, "count": 48},
            "padding_overhead": 0.125,
        },
    }
    manifest.update(changes)
    return manifest


def _summary() -> dict:
    """A manifest summary as aeops.dataset_summary writes it: label 5 lost in the dead letter, and flagged."""
    def sizes(low, high, counts):
        step = (high - low) / len(counts)
        return {"min": low, "max": high, "mean": (low + high) / 2,
                "histogram": [[low + i * step, low + (i + 1) * step, n] for i, n in enumerate(counts)]}

    def dataset(examples, labels, fmt, low):
        return {"examples": examples, "labels": {"feature": "image/class/label", "counts": labels, "unlabelled": 0},
                "formats": {fmt: examples}, "sizes": {"width": sizes(low, 640, [1, 4, 9, 3, 0, 2]),
                                                      "height": sizes(low, 480, [5, 2, 0, 7, 1, 1])},
                "objects_per_image": {"feature": "image/object/bbox/xmin", "min": 0, "max": 4, "mean": 1.5, "total": 9}}

    return {
        "input": dataset(17, {"7": 9, "3": 6, "5": 2}, "png", 32),
        "output": dataset(64, {"7": 36, "3": 28}, "jpeg", 24),
        "label_shift": {"distance": 0.1176, "warning": 0.05, "skewed": True,
                        "largest": {"label": "5", "input": 0.1176, "output": 0.0}},
    }


@pytest.fixture
def written(tmp_path):
    html_path, sheet_path = write_report(str(tmp_path), _manifest(), _samples())
    with open(html_path, encoding="utf-8") as stream:
        page = stream.read()
    return html_path, sheet_path, page


def test_writes_both_files_where_asked(tmp_path, written):
    html_path, sheet_path, page = written
    assert (html_path, sheet_path) == (str(tmp_path / "report.html"), str(tmp_path / "contact_sheet.png"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["contact_sheet.png", "report.html"]
    assert page == report.render_html(_manifest(), _samples())
    sheet = codec.decode((tmp_path / "contact_sheet.png").read_bytes())
    np.testing.assert_array_equal(sheet, report.contact_sheet(_manifest(), _samples()))


def test_html_is_self_contained(written):
    page = written[2]
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower() and "<link" not in page.lower()
    sources = re.findall(r'\bsrc="([^"]*)"', page)
    assert len(sources) == 5  # 2 sources, 2 augmented, 1 reconstructed: the missing one is a placeholder
    assert all(src.startswith("data:image/jpeg;base64,") for src in sources)
    assert "model did not run on this variant" in page


def test_user_data_is_escaped(written):
    page = written[2]
    assert HOSTILE_KEY not in page and "&lt;script&gt;alert(&#x27;key&#x27;)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert "</pre><b>" not in page


def test_html_shows_the_runs_numbers(written):
    page = written[2]
    assert "17 × 4 = 68 = 64 + 4" in page and "✓" in page
    assert ">0.128<" in page and "2 min 13 s" in page
    assert "0.481 variants/s" in page and "outputs/s" not in page  # the unit the terminal's summary prints
    assert "32.10 dB" in page and "0.9300" in page and "feedface" in page
    dead = re.search(r"Dead letters by reason(.*?)</table>", page, re.S)[1]
    assert dead.index("decode") < dead.index("infer")  # most frequent first
    assert "ResourceExhausted" in dead and ">2<" in dead and ">1<" in dead
    assert "<b>rotate</b> <code>angle=12.5, border=reflect</code>" in page and "<b>hflip</b></li>" in page
    assert "PSNR 38.62 dB · SSIM 0.9877" in page and "variant 2" in page
    assert "aaaaaaaaaa…" in page  # long keys shortened, the full key in a tooltip
    assert "<details open><summary>Inputs: 3 files, 12.0 KiB</summary>" in page
    assert "&quot;variants&quot;: 4" in page  # the config, as pretty JSON


FAILED_GATE = {"passed": False, "reason": "24 of 39 outputs dead-lettered (61.5%), above publish.max_dead_fraction = 0.5",
               "dead_fraction": 24 / 39, "max_dead_fraction": 0.5}


def test_a_failed_publish_gate_is_a_banner_above_everything():
    page = report.render_html(_manifest(gate=FAILED_GATE), [])
    banner = re.search(r'<div class="gate" role="alert">(.*?)</div>', page, re.S)
    assert banner and f"not published: {FAILED_GATE['reason']}" in banner[1] and "LATEST" in banner[1]
    assert page.index('class="gate"') < page.index('class="verdict') and "publish gates passed" not in page
    hostile = report.render_html(_manifest(gate={"passed": False, "reason": HOSTILE_REASON}), [])
    assert "<img src=x" not in hostile and "not published: decode/&lt;img src=x" in hostile


def test_the_contact_sheet_title_says_not_published_in_red_when_a_gate_failed():
    def reds(manifest):
        header = report.contact_sheet(manifest, [])[:HEADER - 22].astype(int)
        return ((header[..., 0] > 150) & (header[..., 1] < 90) & (header[..., 2] < 90)).sum()

    assert reds(_manifest(gate=FAILED_GATE)) > 100
    assert reds(_manifest(gate={"passed": True, "reason": None})) == reds(_manifest()) == 0


def test_a_passed_publish_gate_is_one_quiet_line():
    page = report.render_html(_manifest(gate={"passed": True, "reason": None, "dead_fraction": 4 / 68,
                                              "max_dead_fraction": 0.5}), [])
    assert "publish gates passed: 5.9% of the outputs dead-lettered, at most 50.0% allowed" in page
    assert 'class="gate"' not in page and "not published" not in page
    assert "publish gates" not in report.render_html(_manifest(), [])  # a manifest from before the gates


def test_a_broken_reconciliation_is_shown_as_such():
    page = report.render_html(_manifest(records_out=60), [])
    assert "17 × 4 = 68 ≠ 60 + 4" in page and "✗" in page and 'class="verdict bad"' in page


@pytest.mark.parametrize(
    "manifest",
    [
        {},
        _manifest(metrics=None, dead_letter=None, model=None, inputs=None, config=None, started=None),
        _manifest(metrics={"throughput": {}, "psnr": {"count": 0}}, dead_letter={"entries": 0, "variants": 0}),
    ],
    ids=["empty", "nones", "partial"],
)
def test_missing_fields_render_gracefully(tmp_path, manifest):
    html_path, sheet_path = write_report(str(tmp_path), manifest, [])
    page = open(html_path, encoding="utf-8").read()
    assert "No samples were collected" in page
    assert codec.decode(open(sheet_path, "rb").read()).shape == (*report.sheet_size(0), 3)


def test_contact_sheet_is_a_grid_of_letterboxed_tiles(written):
    sheet = codec.decode(open(written[1], "rb").read())
    row = TILE + CAPTION + GAP
    assert sheet.shape == (HEADER + 2 * row + GAP, 3 * TILE + 4 * GAP, 3)
    # Sample 0's source (200 x 256) is centred vertically in its tile: the magenta block lands 28 px lower.
    top, left = HEADER + (TILE - 200) // 2, GAP
    np.testing.assert_array_equal(sheet[top + 20 : top + 120, left + 20 : left + 120], np.full((100, 100, 3), MAGENTA))
    restored_tile = sheet[HEADER + row : HEADER + row + TILE, GAP + 2 * (TILE + GAP) :][:, :TILE]
    assert restored_tile.std() < 20  # no image where the model did not run
    assert (sheet[HEADER + TILE : HEADER + TILE + CAPTION, :TILE] < 100).any()  # a caption is drawn


def test_thumbnail_shrinks_keeping_the_aspect_and_never_enlarges():
    assert thumbnail(np.zeros((600, 1000, 3), np.uint8)).shape == (154, 256, 3)
    assert thumbnail(np.zeros((1000, 20, 3), np.uint8), max_side=100).shape == (100, 2, 3)
    small = np.zeros((10, 30, 3), np.uint8)
    assert thumbnail(small) is small


def test_sample_rejects_images_that_are_not_rgb_uint8():
    with pytest.raises(ValueError, match="Sample.augmented must be uint8"):
        Sample("k", 1, [], gradient(), gradient().astype(np.float32), None)


def test_writes_to_gcs_with_content_types(gcs_emulator):
    directory = f"gs://{gcs_emulator}/out/v-0123456789ab"
    write_report(directory, _manifest(), _samples())
    bucket = gcs.Client(project="test").bucket(gcs_emulator)
    page = bucket.get_blob("out/v-0123456789ab/report.html")
    sheet = bucket.get_blob("out/v-0123456789ab/contact_sheet.png")
    assert page.content_type.startswith("text/html") and sheet.content_type == "image/png"
    assert "17 × 4 = 68 = 64 + 4" in page.download_as_text()


def test_dataset_summary_is_shown_with_the_skew_flag():
    page = report.render_html(_manifest(summary=_summary()), [])
    section = re.search(r"Dataset: input vs output(.*?)</section>", page, re.S)[1]
    assert "Label distribution skewed by the dead letter" in section and "0.118" in section
    assert "11.8% of the input to 0.0% of the output" in section
    assert section.count('class="bar in"') == 3 and section.count('class="bar out"') == 3  # label 5 has an empty bar
    assert "2 · 11.8%" in section and "0 · 0.0%" in section
    assert section.count("<svg") == 4 and "input width" in section and "output height" in section
    assert "png 17 → jpeg 64" in section and "0–4, mean 1.50" in section
    calm = _summary() | {"label_shift": {**_summary()["label_shift"], "skewed": False}}
    assert "skewed" not in report.render_html(_manifest(summary=calm), [])


def screenshot_of(tmp_path, html_path) -> np.ndarray:
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium) to render report.html")
    screenshot = tmp_path / "screenshot.png"
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={screenshot}", "--window-size=1280,2000",
        f"file://{html_path}",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert screenshot.exists(), f"chromium exited {result.returncode}: {result.stderr[-2000:]}"
    return codec.decode(screenshot.read_bytes()).astype(int)


def test_renders_in_headless_chromium(tmp_path, written):
    """A browser draws the page: the verdict bar and the embedded images (the magenta block) are on screen."""
    pixels = screenshot_of(tmp_path, written[0])
    assert pixels.std() > 20, "the screenshot is blank"
    assert (np.abs(pixels[:200] - (30, 122, 76)).sum(-1) < 30).sum() > 10_000, "no green verdict bar at the top"
    assert (np.abs(pixels - MAGENTA).sum(-1) < 40).sum() > 3 * 5_000, "the embedded images were not drawn"



def test_a_failed_gate_renders_as_a_red_banner_on_top(tmp_path):
    html_path, _ = write_report(str(tmp_path), _manifest(gate=FAILED_GATE), [])
    pixels = screenshot_of(tmp_path, html_path)
    red = np.abs(pixels - (180, 35, 24)).sum(-1) < 30
    assert red[:120].sum() > 40_000, "no red banner across the top of the page"
    assert (np.abs(pixels[:300] - (30, 122, 76)).sum(-1) < 30).sum() > 10_000, "the verdict is gone from under it"


def test_dataset_charts_render_in_headless_chromium(tmp_path):
    """The label bars (input blue, output purple, side by side) and the four size histograms are drawn."""
    html_path, _ = write_report(str(tmp_path), _manifest(summary=_summary()), _samples())
    pixels = screenshot_of(tmp_path, html_path)
    blue, purple = (np.abs(pixels - colour).sum(-1) < 30 for colour in (INPUT_BLUE, OUTPUT_PURPLE))
    assert blue.sum() > 5_000 and purple.sum() > 5_000, (blue.sum(), purple.sum())
    # Side by side: a thin label bar and a tall histogram bar share screen rows (stacked, they never would).
    boxes = [box for box in ndimage.find_objects(ndimage.label(blue)[0]) if box[1].stop - box[1].start > 20]
    starts = collections.Counter(box[1].start for box in boxes if box[0].stop - box[0].start <= 14)
    label_bars = [box[0] for box in boxes if box[1].start == starts.most_common(1)[0][0]]  # left-aligned rows
    histogram_bars = [box[0] for box in boxes if box[0].stop - box[0].start > 20]
    assert len(label_bars) == 3 and histogram_bars, (len(label_bars), len(histogram_bars))
    assert any(b.start < h.stop and h.start < b.stop for b in label_bars for h in histogram_bars), \
        "the labels chart and the size histograms are not side by side"
    red_flag = (np.abs(pixels - (180, 35, 24)).sum(-1) < 30).sum()
    assert red_flag > 300, "the label-shift flag's red edge is not drawn"
