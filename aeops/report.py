"""A run's visual report: the manifest and a few sampled images -> ``report.html`` and ``contact_sheet.png``.

Pure: data in, files out; no Beam or TensorFlow here. The pipeline calls :func:`write_report` once, at the end of
a run, with thumbnails it has already collected. Each file stands alone. The HTML embeds its images and style,
because it is opened from a bucket or an attachment, often offline. The PNG draws its own captions, so it still
makes sense when it is the only file someone is sent.

Every manifest field may be missing or ``None`` (a failed or partial run still deserves a report): the report
shows a dash, never raises. Keys, reasons, paths and config values are user data and are HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass
from datetime import datetime

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from aeops import codec, storage
from aeops.dataset_summary import label_rows

TILE = 256  # side of a contact-sheet tile, and of the pipeline's thumbnails
GAP = 8
CAPTION = 36  # two caption lines under each tile
HEADER = 44  # the run's summary line and the column titles
COLUMNS = ("source", "augmented", "reconstructed")
FONT_SIZE = 13
GATE_RED = (180, 35, 24)  # the contact sheet's title when a publish gate failed: the HTML banner's colour
LONG_INPUTS = 8  # more input files than this and the list starts collapsed
INPUT_COLOUR, OUTPUT_COLOUR = "#2f6fdb", "#8e4fd1"  # the input's and the output's bars in every dataset chart


@dataclass(frozen=True, eq=False)
class Sample:
    """One sampled output variant next to its source, as the report shows it.

    ``psnr`` and ``ssim`` compare ``restored`` with ``augmented``: how much the model changed its input.
    ``restored`` is ``None`` when the model did not run on this variant. ``eq=False`` because arrays have no
    single truth value: samples compare by identity.
    """

    source_key: str
    variant: int
    ops: list[dict]
    source: np.ndarray
    augmented: np.ndarray
    restored: np.ndarray | None = None
    psnr: float | None = None
    ssim: float | None = None

    def __post_init__(self):
        # Caught where the pipeline builds the sample, not as an OpenCV error when the run is already over.
        for name in ("source", "augmented", "restored"):
            image = getattr(self, name)
            if image is not None and (image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3):
                raise ValueError(f"Sample.{name} must be uint8 (H, W, 3), got {image.dtype} {image.shape}")


def thumbnail(image: np.ndarray, max_side: int = TILE) -> np.ndarray:
    """``image`` shrunk so its longer side is at most ``max_side`` (INTER_AREA: no aliasing); never enlarged."""
    height, width = image.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def write_report(directory: str, manifest: dict, samples: list[Sample]) -> tuple[str, str]:
    """Write ``report.html`` and ``contact_sheet.png`` into ``directory`` (local or ``gs://``); return both paths."""
    html_path = storage.join(directory, "report.html")
    sheet_path = storage.join(directory, "contact_sheet.png")
    _write(html_path, render_html(manifest, samples).encode("utf-8"), "text/html; charset=utf-8")
    _write(sheet_path, codec.encode(contact_sheet(manifest, samples), "png"), "image/png")
    return html_path, sheet_path


def _write(path: str, data: bytes, mime_type: str) -> None:
    # The content type matters on gs://: with it a browser shows the report instead of downloading it.
    with storage.open_write(path, mime_type=mime_type) as stream:
        stream.write(data)


# ---------------------------------------------------------------------------------------------- the numbers


def _get(mapping, *keys):
    """``mapping[k1][k2]...``, or ``None`` where a level is missing or not a dict."""
    for key in keys:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def reconciliation(manifest: dict) -> tuple[str, bool | None]:
    """The contract's ``records_in × variants = records_out + Σ dead variants``, filled in, and whether it holds.

    ``None`` when a term is missing: the report says it cannot check rather than guessing.
    """
    records_in, variants, records_out = (manifest.get(k) for k in ("records_in", "variants", "records_out"))
    dead = _get(manifest, "dead_letter", "variants")
    if not all(_is_int(v) for v in (records_in, variants, records_out, dead)):
        return f"{_num(records_in)} × {_num(variants)} = {_num(records_out)} + {_num(dead)}", None
    expected, produced = records_in * variants, records_out + dead
    sign = "=" if expected == produced else "≠"
    return f"{records_in:,} × {variants:,} = {expected:,} {sign} {records_out:,} + {dead:,}", expected == produced


def _num(value, digits: int = 1) -> str:
    if value is None or isinstance(value, bool):
        return "—"
    if _is_int(value):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        return "NaN" if math.isnan(value) else f"{value:,.{digits}f}"
    return str(value)


def _rate(value) -> str:
    """Three significant digits: a small run does 0.128 records/s, a large one 12,800."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value >= 100:
        return _num(value, 0)
    return f"{value:.{max(0, 2 - math.floor(math.log10(value)))}f}" if value > 0 else "0"


def _size(value) -> str:
    if not _is_int(value):
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024


def _duration(started, finished) -> str | None:
    try:
        seconds = (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
    except (TypeError, ValueError):
        return None
    minutes, seconds = divmod(seconds, 60)
    return f"{int(minutes)} min {seconds:.0f} s" if minutes else f"{seconds:.1f} s"


def short_key(key: str, limit: int = 24) -> str:
    """Keys are SHA-256 hex or paths: keep both ends, which is where the two kinds differ."""
    return key if len(key) <= limit else f"{key[:10]}…{key[-(limit - 11):]}"


def _param(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)


def op_text(op: dict) -> str:
    """``{"op": "rotate", "params": {"angle": 12.5}}`` -> ``rotate(angle=12.5)``."""
    params = op.get("params") or {}
    return f"{op.get('op', '?')}({', '.join(f'{k}={_param(v)}' for k, v in params.items())})"


def dead_letter_rows(manifest: dict) -> list[tuple[str, str, int]]:
    """(stage, reason, count), most frequent first. ``by_reason`` keys are ``stage/reason``; without them, stages."""
    by_reason = _get(manifest, "dead_letter", "by_reason") or {}
    if by_reason:
        rows = [(*key.split("/", 1), count) if "/" in key else ("—", key, count) for key, count in by_reason.items()]
    else:
        rows = [(stage, "—", count) for stage, count in (_get(manifest, "dead_letter", "by_stage") or {}).items()]
    return sorted(rows, key=lambda row: (-row[2] if _is_int(row[2]) else 0, row[0], row[1]))


# ---------------------------------------------------------------------------------------------- report.html

_CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f3f4f6;color:#1f2933;font:14px/1.45 system-ui,"Segoe UI",Roboto,"DejaVu Sans",sans-serif}
main{max-width:1240px;margin:0 auto;padding:20px}
h1{margin:0;font-size:20px;font-weight:600}
h2{margin:0 0 10px;font-size:16px}
.gate{background:#b42318;color:#fff;padding:14px 22px;margin:0 0 12px;border-radius:10px;font-size:20px;font-weight:650}
.gate p{margin:4px 0 0;font-size:13px;font-weight:400;opacity:.9}
.verdict{display:flex;gap:20px;align-items:center;padding:16px 22px;border-radius:10px;color:#fff}
.ok{background:#1e7a4c}.bad{background:#b42318}.unknown{background:#5b6675}
.mark{font-size:52px;font-weight:700;line-height:1}
.eq{margin:6px 0 2px;font:600 22px ui-monospace,"DejaVu Sans Mono",monospace}
.verdict p{margin:2px 0}.dim{opacity:.85;font-size:13px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px;margin:14px 0}
.card,section{background:#fff;border-radius:8px;box-shadow:0 1px 2px #0000001f}
.card{padding:10px 14px}
.label{color:#5b6675;font-size:11px;text-transform:uppercase;letter-spacing:.05em}
.value{font-size:24px;font-weight:650;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.sub{color:#5b6675;font-size:12px}
.warn .value{color:#b25e00}.good .value{color:#1e7a4c}
section{padding:14px 18px;margin:14px 0}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e5e7eb;vertical-align:top}
th{color:#5b6675;font-weight:600;font-size:12px}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.bar{height:8px;min-width:2px;background:#e8913a;border-radius:4px}
.sample{display:grid;grid-template-columns:repeat(3,256px) 1fr;gap:12px;padding:12px 0;border-top:1px solid #e5e7eb}
.head{grid-column:1/-1;display:flex;gap:14px;align-items:baseline;flex-wrap:wrap}
.key{font:600 13px ui-monospace,"DejaVu Sans Mono",monospace}
figure{margin:0}
figure img,.none{display:block;width:256px;height:256px;object-fit:contain;background:#e5e7eb;border-radius:4px}
.none{display:flex;align-items:center;justify-content:center;color:#5b6675;text-align:center;padding:20px}
figcaption{color:#5b6675;font-size:12px;margin-top:2px}
ol{margin:0;padding-left:20px}
code,pre{font:12px ui-monospace,"DejaVu Sans Mono",monospace}
code{background:#f1f3f5;padding:1px 4px;border-radius:3px;word-break:break-all}
pre{background:#f8f9fa;padding:10px;border-radius:6px;overflow:auto;max-height:520px;margin:8px 0 0}
summary{cursor:pointer;font-weight:600}
.chip{background:#eef2f7;border-radius:10px;padding:1px 8px;font-size:12px;white-space:nowrap}
.flag{background:#fdecea;border-left:6px solid #b42318;padding:10px 14px;margin:0 0 12px;border-radius:4px}
.charts{display:grid;grid-template-columns:minmax(320px,1fr) minmax(320px,1fr);gap:24px}
.labels td{padding:2px 8px}.labels .bar{height:10px;margin:1px 0}
.key-in,.key-out{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 4px 0 10px}
.hists{display:grid;grid-template-columns:repeat(2,1fr);gap:8px}
svg text{font:11px system-ui,"DejaVu Sans",sans-serif;fill:#5b6675}
""" + f".in,.key-in{{background:{INPUT_COLOUR}}}.out,.key-out{{background:{OUTPUT_COLOUR}}}"


def render_html(manifest: dict, samples: list[Sample]) -> str:
    """The whole report as one self-contained HTML document: inline style, images as data URIs, no script."""
    fingerprint = manifest.get("fingerprint")
    title = f"aeops run v-{str(fingerprint)[:12]}" if fingerprint else "aeops run"
    body = "".join(
        (
            _gate_banner(manifest.get("gate")),
            _verdict(manifest, title),
            _cards(manifest),
            _dataset(manifest.get("summary")),
            _dead_letters(manifest),
            _samples(samples),
            _inputs(manifest.get("inputs") or []),
            _config(manifest),
        )
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_CSS}</style></head><body><main>{body}</main></body></html>\n"
    )


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _gate_failure(gate) -> str | None:
    """Why a run failed a publish gate, in the words the command printed; ``None`` when it did not fail one."""
    if not isinstance(gate, dict) or gate.get("passed") is not False:
        return None
    return gate.get("reason") or "a publish gate failed"


def _gate_banner(gate) -> str:
    """A run that failed a publish gate says so before anything else."""
    if (failed := _gate_failure(gate)) is None:
        return ""
    return (
        f'<div class="gate" role="alert">not published: {_e(failed)}'
        "<p>LATEST does not name this version: readers never see it. Its files are kept for you to inspect; "
        "the next run of the same fingerprint writes it again.</p></div>"
    )


def _gate_line(gate) -> str | None:
    """The passed gates, quietly: the share of dead-lettered outputs against the configured bound."""
    if not isinstance(gate, dict) or gate.get("passed") is not True:
        return None
    return (f"publish gates passed: {_share(gate.get('dead_fraction'))} of the outputs dead-lettered, "
            f"at most {_share(gate.get('max_dead_fraction'))} allowed")


def _verdict(manifest: dict, title: str) -> str:
    equation, holds = reconciliation(manifest)
    state, mark, words = {
        True: ("ok", "✓", "every input variant is accounted for: written out or in the dead letter"),
        False: ("bad", "✗", "variants are unaccounted for: the run lost or duplicated records"),
        None: ("unknown", "?", "cannot check: the manifest lacks a term of the equation"),
    }[holds]
    meta = [f"runner {manifest.get('runner') or '—'}", f"aeops {manifest.get('aeops_version') or '—'}"]
    started, finished = manifest.get("started"), manifest.get("finished")
    if started or finished:
        took = _duration(started, finished)
        meta.insert(0, f"{started or '?'} → {finished or '?'}" + (f" ({took})" if took else ""))
    if passed := _gate_line(manifest.get("gate")):
        meta.append(passed)
    return (
        f'<header class="verdict {state}"><div class="mark">{mark}</div><div>'
        f"<h1>{_e(title)}</h1>"
        f'<p class="eq">{_e(equation)}</p>'
        f"<p>records in × variants = records out + dead-letter variants: {_e(words)}</p>"
        f'<p class="dim">{_e(" · ".join(meta))}</p></div></header>'
    )


def _card(label: str, value: str, sub: str = "", tone: str = "") -> str:
    return (
        f'<div class="card {tone}"><div class="label">{_e(label)}</div>'
        f'<div class="value">{_e(value)}</div><div class="sub">{_e(sub)}</div></div>'
    )


def _cards(manifest: dict) -> str:
    metrics = manifest.get("metrics") or {}
    throughput = _get(metrics, "throughput") or {}
    dead_entries, dead_variants = _get(manifest, "dead_letter", "entries"), _get(manifest, "dead_letter", "variants")
    padding = metrics.get("padding_overhead")
    model = manifest.get("model")
    cards = [
        _card("records in", _num(manifest.get("records_in")), f"× {_num(manifest.get('variants'))} variants each"),
        _card("records out", _num(manifest.get("records_out"))),
        _card(
            "dead letters",
            _num(dead_entries),
            f"standing for {_num(dead_variants)} variants",
            "warn" if dead_entries else "good" if dead_entries == 0 else "",
        ),
        _card(
            "records / s",
            _rate(throughput.get("records_per_s")),
            f"{_rate(throughput.get('outputs_per_s'))} variants/s over {_num(throughput.get('seconds'))} s"
            + (f"; batch padding +{padding:.0%} pixels" if isinstance(padding, (int, float)) else ""),
        ),
        _summary_card("PSNR", metrics.get("psnr"), " dB", 2),
        _summary_card("SSIM", metrics.get("ssim"), "", 4),
        _card(
            "model sha256",
            str(model.get("sha256") or "—")[:8] if isinstance(model, dict) else "none",
            str(model.get("path") or "") if isinstance(model, dict) else "augmented only, nothing restored",
        ),
    ]
    return f'<div class="cards">{"".join(cards)}</div>'


def _summary_card(name: str, summary, unit: str, digits: int) -> str:
    if not isinstance(summary, dict) or not summary.get("count"):
        return _card(name, "—", "the model did not run")
    return _card(
        name,
        f"{_num(summary.get('mean'), digits)}{unit}",
        f"restored vs augmented, mean of {_num(summary.get('count'))}; min {_num(summary.get('min'), digits)}"
        f", max {_num(summary.get('max'), digits)}",
    )


def _dataset(summary) -> str:
    """Labels in vs out side by side, image size histograms, formats and objects per image; the label-shift flag."""
    if not isinstance(summary, dict):
        return ""
    source, result = summary.get("input") or {}, summary.get("output") or {}
    shift = summary.get("label_shift") if isinstance(summary.get("label_shift"), dict) else None
    flag = ""
    if shift and shift.get("skewed"):
        largest = shift.get("largest") or {}
        flag = (
            f'<p class="flag"><b>Label distribution skewed by the dead letter</b>: total variation distance '
            f"{_num(shift.get('distance'), 3)} above the warning level {_num(shift.get('warning'), 2)} "
            f"(report.label_shift_warning); label <code>{_e(largest.get('label'))}</code> went from "
            f"{_share(largest.get('input'))} of the input to {_share(largest.get('output'))} of the output.</p>"
        )
    facts = (
        f"<p class=sub>{_num(source.get('examples'))} input records parsed, {_num(result.get('examples'))} output "
        f"variants written. Formats: {_e(_formats(source.get('formats')))} → {_e(_formats(result.get('formats')))}."
        + _objects_sentence(source.get("objects_per_image"), result.get("objects_per_image"))
        + (f" Label shift {_num(shift.get('distance'), 3)} (total variation distance)." if shift else "")
        + " Every feature's statistics: <code>statistics.pb</code> (TFDV, Facets).</p>"
    )
    return (
        f"<section><h2>Dataset: input vs output</h2>{flag}{facts}<div class=charts>"
        f"<div>{_label_chart(source.get('labels'), result.get('labels'))}</div>"
        f"<div>{_size_charts(source.get('sizes'), result.get('sizes'))}</div></div></section>"
    )


def _share(value) -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "—"


def _formats(formats) -> str:
    if not isinstance(formats, dict) or not formats:
        return "—"
    return ", ".join(f"{name} {_num(n)}" for name, n in sorted(formats.items(), key=lambda kv: -kv[1]))


def _objects_sentence(before, after) -> str:
    if not isinstance(before, dict) and not isinstance(after, dict):
        return ""
    return f" Objects per image: {_e(_objects_text(before))} → {_e(_objects_text(after))}."


def _objects_text(objects) -> str:
    if not isinstance(objects, dict):
        return "—"
    return f"{_num(objects.get('min'))}–{_num(objects.get('max'))}, mean {_num(objects.get('mean'), 2)}"


LABELS_SHOWN = 20


def _label_chart(before, after) -> str:
    """Per label, the input's share above the output's: equal bars mean the run kept the distribution."""
    rows = label_rows(before, after)
    if not rows:
        return "<h3>Labels</h3><p class=sub>No label feature in these records.</p>"
    top = max(max(share_in, share_out) for _, _, share_in, _, share_out in rows) or 1
    bars = "".join(
        f"<tr><td><code>{_e(label)}</code></td><td style=\"width:60%\">"
        f'<div class="bar in" style="width:{100 * share_in / top:.1f}%"></div>'
        f'<div class="bar out" style="width:{100 * share_out / top:.1f}%"></div></td>'
        f"<td class=n>{_num(n_in)} · {_share(share_in)}<br>{_num(n_out)} · {_share(share_out)}</td></tr>"
        for label, n_in, share_in, n_out, share_out in rows[:LABELS_SHOWN]
    )
    hidden = len(rows) - LABELS_SHOWN
    more = f"<p class=sub>… {hidden} more labels in statistics.pb</p>" if hidden > 0 else ""
    name = (before if isinstance(before, dict) and before else after).get("feature", "label")
    return (
        f"<h3>Labels (<code>{_e(name)}</code>)<span class=key-in></span>input<span class=key-out></span>output</h3>"
        f"<table class=labels>{bars}</table>{more}"
    )


def _size_charts(before, after) -> str:
    charts = "".join(
        _histogram_svg(((sizes or {}).get(side) if isinstance(sizes, dict) else None), f"{name} {side}", tone)
        for name, sizes, tone in (("input", before, INPUT_COLOUR), ("output", after, OUTPUT_COLOUR))
        for side in ("width", "height")
    )
    return f"<h3>Image sizes (pixels)</h3><div class=hists>{charts}</div>"


def _histogram_svg(summary, title: str, colour: str, width: int = 260, height: int = 120) -> str:
    """One size histogram as inline SVG: bars over [min, max], the range written under them."""
    buckets = summary.get("histogram") if isinstance(summary, dict) else None
    if not buckets:
        return f"<div><b>{_e(title)}</b><p class=sub>—</p></div>"
    top = max(count for *_, count in buckets) or 1
    plot, step = height - 34, width / len(buckets)
    bars = "".join(
        f'<rect x="{i * step + 1:.1f}" y="{16 + plot * (1 - count / top):.1f}" width="{step - 2:.1f}" '
        f'height="{plot * count / top:.1f}" fill="{colour}"><title>{low:.0f}–{high:.0f}: {count:.0f}</title></rect>'
        for i, (low, high, count) in enumerate(buckets)
    )
    return (
        f'<svg width="{width}" height="{height}" role="img" aria-label="{_e(title)}">'
        f'<text x="0" y="11">{_e(title)} (mean {_num(summary.get("mean"), 0)})</text>{bars}'
        f'<text x="0" y="{height - 4}">{_num(summary.get("min"), 0)}</text>'
        f'<text x="{width}" y="{height - 4}" text-anchor="end">{_num(summary.get("max"), 0)}</text></svg>'
    )


def _dead_letters(manifest: dict) -> str:
    rows = dead_letter_rows(manifest)
    if not rows:
        entries = _get(manifest, "dead_letter", "entries")
        text = "None: every record was processed." if entries == 0 else "No breakdown in the manifest."
        return f"<section><h2>Dead letters</h2><p>{_e(text)}</p></section>"
    top = max((count for *_, count in rows if _is_int(count)), default=0) or 1
    body = "".join(
        f"<tr><td>{_e(stage)}</td><td><code>{_e(reason)}</code></td><td class=n>{_e(_num(count))}</td>"
        f'<td style="width:30%"><div class="bar" style="width:{100 * count / top if _is_int(count) else 0:.0f}%">'
        f"</div></td></tr>"
        for stage, reason, count in rows
    )
    return (
        "<section><h2>Dead letters by reason</h2><table><tr><th>stage</th><th>reason</th>"
        f'<th style="text-align:right">count</th><th></th></tr>{body}</table></section>'
    )


def _data_uri(image: np.ndarray) -> str:
    # JPEG at 90: a tenth of PNG's size and no visible difference at thumbnail size; the PNG sheet is exact.
    return "data:image/jpeg;base64," + base64.b64encode(codec.encode(thumbnail(image), "jpeg", 90)).decode("ascii")


def _figure(image: np.ndarray | None, caption: str) -> str:
    if image is None:
        picture = '<div class="none">model did not run on this variant</div>'
    else:
        picture = f'<img alt="{_e(caption)}" src="{_data_uri(image)}">'
    return f"<figure>{picture}<figcaption>{_e(caption)}</figcaption></figure>"


def _samples(samples: list[Sample]) -> str:
    if not samples:
        return "<section><h2>Samples</h2><p>No samples were collected in this run.</p></section>"
    cards = []
    for sample in samples:
        ops = f'<ol>{"".join(map(_op_item, sample.ops))}</ol>' if sample.ops else "<p>none: the source itself</p>"
        cards.append(
            f'<div class="sample"><div class="head"><span class="key" title="{_e(sample.source_key)}">'
            f"{_e(short_key(sample.source_key))}</span><span class=chip>variant {_e(sample.variant)}</span>"
            f"<span class=chip>{_e(_quality(sample))}</span></div>"
            f"{_figure(sample.source, 'source')}{_figure(sample.augmented, 'augmented')}"
            f"{_figure(sample.restored, 'reconstructed')}"
            f'<div><div class="label">ops, in order</div>{ops}</div></div>'
        )
    return (
        f"<section><h2>Samples ({len(samples)})</h2><p class=sub>source | augmented | reconstructed by the model. "
        "PSNR and SSIM compare reconstructed with augmented: how much the model changed its input.</p>"
        f'{"".join(cards)}</section>'
    )


def _op_item(op: dict) -> str:
    params = ", ".join(f"{k}={_param(v)}" for k, v in (op.get("params") or {}).items())
    return f"<li><b>{_e(op.get('op', '?'))}</b>" + (f" <code>{_e(params)}</code></li>" if params else "</li>")


def _inputs(inputs: list) -> str:
    if not inputs:
        return "<section><h2>Inputs</h2><p>None listed in the manifest.</p></section>"
    entries = [entry if isinstance(entry, dict) else {"path": entry} for entry in inputs]
    total = sum(entry.get("size") for entry in entries if _is_int(entry.get("size")))
    rows = "".join(
        f"<tr><td><code>{_e(entry.get('path', '—'))}</code></td><td class=n>{_e(_size(entry.get('size')))}</td>"
        f"<td class=sub>{_e(', '.join(f'{k}={v}' for k, v in entry.items() if k not in ('path', 'size')))}</td></tr>"
        for entry in entries
    )
    opened = "" if len(entries) > LONG_INPUTS else " open"
    return (
        f"<section><details{opened}><summary>Inputs: {len(entries)} files, {_e(_size(total))}</summary>"
        f"<table><tr><th>path</th><th>size</th><th></th></tr>{rows}</table></details></section>"
    )


def _config(manifest: dict) -> str:
    text = json.dumps(manifest.get("config"), indent=2, sort_keys=True, default=str, ensure_ascii=False)
    return f"<section><details><summary>Config (resolved)</summary><pre>{_e(text)}</pre></details></section>"


# ---------------------------------------------------------------------------------------------- contact_sheet.png


def sheet_size(count: int) -> tuple[int, int]:
    """(height, width) of the contact sheet for ``count`` samples; an empty run still gets one (blank) row."""
    return HEADER + max(count, 1) * (TILE + CAPTION + GAP) + GAP, 3 * TILE + 4 * GAP


def contact_sheet(manifest: dict, samples: list[Sample]) -> np.ndarray:
    """One row per sample, source | augmented | reconstructed, each letterboxed into a captioned tile."""
    height, width = sheet_size(len(samples))
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=FONT_SIZE)
    title, colour = _sheet_title(manifest), (20, 20, 20)
    if failed := _gate_failure(manifest.get("gate")):
        title, colour = f"NOT PUBLISHED: {failed}    {title}", GATE_RED
    draw.text((GAP, 6), _fit(draw, title, font, width - 2 * GAP), fill=colour, font=font)
    for column, name in enumerate(COLUMNS):
        draw.text((GAP + column * (TILE + GAP), HEADER - 20), name.upper(), fill=(90, 100, 115), font=font)
    if not samples:
        draw.text((GAP, HEADER + TILE // 2), "no samples collected in this run", fill=(90, 100, 115), font=font)
    for row, sample in enumerate(samples):
        top = HEADER + row * (TILE + CAPTION + GAP)
        for column, (image, caption) in enumerate(_tiles(sample, draw, font)):
            left = GAP + column * (TILE + GAP)
            sheet.paste(Image.fromarray(_letterbox(image)), (left, top))
            for line, text in enumerate(caption):
                position = (left, top + TILE + 3 + 16 * line)
                draw.text(position, _fit(draw, text, font, TILE), fill=(20, 20, 20), font=font)
    return np.asarray(sheet)


def _quality(sample: Sample) -> str:
    if sample.restored is None:
        return "model did not run"
    return f"PSNR {_num(sample.psnr, 2)} dB · SSIM {_num(sample.ssim, 4)}"


def _sheet_title(manifest: dict) -> str:
    """The verdict in one line of ASCII-safe text (the default font has no ✓, ✗ or ×)."""
    equation, holds = reconciliation(manifest)
    verdict = {True: "all accounted for", False: "NOT RECONCILED", None: "unchecked"}[holds]
    fingerprint = manifest.get("fingerprint")
    psnr = _get(manifest, "metrics", "psnr", "mean")
    return (
        f"aeops v-{str(fingerprint)[:12] if fingerprint else '?'}    "
        f"in x variants = out + dead:  {equation.replace('×', 'x').replace('≠', '!=')}  ({verdict})"
        + (f"    PSNR mean {_num(psnr, 2)} dB" if isinstance(psnr, (int, float)) else "")
    )


def _tiles(sample: Sample, draw: ImageDraw.ImageDraw, font) -> list[tuple[np.ndarray | None, tuple[str, ...]]]:
    """Each tile's image and caption lines: the key, the ops (as many as two lines hold), PSNR and SSIM."""
    ops = [op_text(op) for op in sample.ops] or ["no ops: the source itself"]
    first = 1
    while first < len(ops) and draw.textlength(" > ".join(ops[: first + 1]), font=font) <= TILE:
        first += 1
    quality = _quality(sample).split(" · ")
    return [
        (sample.source, (short_key(sample.source_key, 36), f"variant {sample.variant}")),
        (sample.augmented, (" > ".join(ops[:first]), " > ".join(ops[first:]))),
        (sample.restored, tuple(quality)),
    ]


def _letterbox(image: np.ndarray | None) -> np.ndarray:
    """``image`` centred on a grey TILE × TILE square (shrunk to fit, never enlarged); a blank tile for ``None``."""
    tile = np.full((TILE, TILE, 3), 226, np.uint8)
    if image is None:
        cv2.line(tile, (0, 0), (TILE - 1, TILE - 1), (200, 200, 200), 2)
        cv2.line(tile, (0, TILE - 1), (TILE - 1, 0), (200, 200, 200), 2)
        return tile
    image = thumbnail(image)
    height, width = image.shape[:2]
    top, left = (TILE - height) // 2, (TILE - width) // 2
    tile[top : top + height, left : left + width] = image
    return tile


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """``text`` cut to ``width`` pixels, with an ellipsis where it was cut."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"
