"""Typed, frozen configuration: YAML -> validated objects, ``--set a.b=c`` overrides, canonical JSON.

Everything is checked when the config is loaded, before any pipeline starts: an unknown key or an
out-of-range value raises :class:`~aeops.errors.ConfigError` with one line naming the key and what is
allowed. The canonical serialisation (sorted keys, no whitespace) goes into manifests and fingerprints.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aeops.errors import ConfigError

Precision = Literal["float32", "bfloat16"]  # how the model's convolutions run (aeops.model.load)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def Range(low: float, high: float):  # noqa: N802 - a type factory, used like a type
    """``[a, b]`` with ``low <= a <= b <= high``; a fixed value is written ``[v, v]``."""

    def check(pair: tuple[float, float]) -> tuple[float, float]:
        if not low <= pair[0] <= pair[1] <= high:
            raise ValueError(f"must be [a, b] with {low:g} <= a <= b <= {high:g}")
        return pair

    return Annotated[tuple[float, float], AfterValidator(check)]


# --- the record schema (CONTRACT §3) --------------------------------------------------------------

# Each preset fills every name the user did not set; ``schema.image=...`` etc. override one by one.
PRESETS: dict[str, dict[str, Any]] = {
    "od-api": {
        "image": "image/encoded", "key": "image/key", "label": "image/class/label",
        "boxes": "image/object/bbox", "box_format": "od-api", "objects": "image/object/",
        "keypoints": "image/object/keypoint", "mask": "image/segmentation/class/encoded",
    },
    "tfds": {
        "image": "image", "key": None, "label": "label",
        "boxes": "objects/bbox", "box_format": "tfds", "objects": "objects/", "keypoints": None, "mask": None,
    },
    "classification": {
        "image": "image/encoded", "key": "image/key", "label": "image/class/label",
        "boxes": None, "box_format": "od-api", "objects": None, "keypoints": None, "mask": None,
    },
}
DEFAULT_MIN_BOX_VISIBILITY = 0.25


class SchemaConfig(Strict):
    """Where a record keeps its image, key and spatial targets; ``null`` = the record has none of that kind."""

    preset: Literal["od-api", "tfds", "classification"] = Field("od-api", description="od-api, tfds or classification")
    image: str = Field(description="the encoded image feature (bytes)")
    key: str | None = Field(description="the stable id feature (bytes); null or absent = SHA-256 of the image")
    label: str | None = Field(description="the image's class label feature, passed through")
    boxes: str | None = Field(description=(
        "od-api format: the prefix of the four features PREFIX/xmin|ymin|xmax|ymax; "
        "tfds format: one float list [ymin, xmin, ymax, xmax] * N"))
    box_format: Literal["od-api", "tfds"] = Field(description="od-api (four lists) or tfds (one list of 4 per box)")
    objects: str | None = Field(description="prefix of the per-object lists kept aligned with the boxes")
    keypoints: str | None = Field(description="prefix of PREFIX/x, PREFIX/y (normalised) and PREFIX/visibility")
    mask: str | None = Field(description="a PNG segmentation mask (class ids), same size as the image")
    min_box_visibility: float = Field(DEFAULT_MIN_BOX_VISIBILITY, ge=0, le=1, description=(
        "drop a box (and its per-object values) when less than this share of it is left inside the image"))

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        """Names not given come from the preset (``od-api`` unless another is named)."""
        if not isinstance(data, dict):
            return data
        preset = data.get("preset", "od-api")
        return {**PRESETS.get(preset, {}), **data}


# --- the augmentation job (aeops augment) -------------------------------------------------------


class DecodeConfig(Strict):
    max_pixels: int = Field(64_000_000, ge=1, description="reject images with more pixels, from the header")


class AugmentConfig(Strict):
    variants: int = Field(4, ge=0, le=1000, description="augmented variants per source record")
    keep_original: bool = Field(True, description="also emit the source itself as variant 0")
    ops: list[dict[str, Any]] = Field(default_factory=list, description="[{op, p, ...ranges}], applied in order")

    @field_validator("ops")
    @classmethod
    def _buildable(cls, ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Build the op pipeline once at load time, so a bad op list fails before any pipeline starts."""
        from aeops.ops import build  # here, so loading a config for another job never imports OpenCV

        build(ops)
        return ops

    @model_validator(mode="after")
    def _some_output(self) -> "AugmentConfig":
        if self.variants == 0 and not self.keep_original:
            raise ValueError("variants must be >= 1 when keep_original is false (nothing would be written)")
        return self

    @property
    def outputs_per_record(self) -> int:
        """Output records per source record: the ``variants`` of the manifest's reconciliation."""
        return self.variants + int(self.keep_original)


class InferenceConfig(Strict):
    enabled: bool = True
    model_dir: str | None = Field(None, description="SavedModel directory; null = the shipped model")
    fraction: float = Field(1.0, ge=0.0, le=1.0, description="share of variants the model restores")
    min_batch_size: int = Field(1, ge=1)
    max_batch_size: int = Field(16, ge=1, le=4096)
    max_batch_pixels: int = Field(
        1 << 20, ge=1, description="padded pixels per model call (one image at least): the GPU memory bound"
    )
    max_batch_duration_secs: float | None = Field(
        None, gt=0, description="enables Beam's stateful shape-bucketed batching (a shuffle); null = stream"
    )
    pad_multiple: int = Field(32, ge=8, le=1024, description="images are padded up to a multiple of this to batch")
    deterministic: bool = Field(False, description="fixed batch composition + TF deterministic ops")
    overlap: bool = Field(True, description=(
        "run the model calls on a thread of their own, so that reading, decoding, augmenting and encoding "
        "overlap them (one batch in the model, one waiting); false = one after the other, in the bundle's "
        "thread"))
    model_copies: int | None = Field(
        None, ge=1, le=64, description="models per worker machine, shared across its processes (1 on a GPU)"
    )
    precision: Precision = Field(
        "float32", description="bfloat16: the model's convolutions through oneDNN's bfloat16 rewrite, about 2x "
        "on CPUs with AVX-512 BF16 or AMX (slower on CPUs without); outputs differ from float32 by a grey level"
    )

    @model_validator(mode="after")
    def _batch_bounds(self) -> "InferenceConfig":
        if self.min_batch_size > self.max_batch_size:
            raise ValueError("min_batch_size must be <= max_batch_size")
        return self


class EncodeConfig(Strict):
    format: Literal["jpeg", "png", "webp"] = "jpeg"
    quality: int = Field(95, ge=1, le=100, description="JPEG/WebP quality")
    num_shards: int = Field(0, ge=0, le=100_000, description="0 = let the runner decide")
    compression: Literal["none", "gzip"] = "none"


class ReportConfig(Strict):
    samples: int = Field(12, ge=0, le=200, description="records shown in the report and contact sheet")
    label_shift_warning: float = Field(
        0.05, ge=0, le=1, description="flag a run whose label shares moved more than this between input and "
        "output (total variation distance, 0-1: the share of the labels' mass the dead letter moved); "
        "see aeops/dataset_summary.py",
    )


class PublishConfig(Strict):
    max_dead_fraction: float = Field(0.5, ge=0.0, le=1.0, description=(
        "the largest share of a run's outputs that may be dead-lettered for LATEST to move to it (0-1); "
        "a run with no output is never published"))


# ``schema`` is the section's name in CONTRACT §3; pydantic warns that it shadows BaseModel.schema(), a
# deprecated classmethod nothing here calls.
warnings.filterwarnings("ignore", 'Field name "schema"', UserWarning)


class PipelineConfig(Strict):
    seed: int = Field(0, ge=0, lt=2**63)
    input: str | None = Field(None, description="TFRecord glob, local or gs://")
    output: str | None = Field(None, description="output ROOT, local or gs://")
    schema: SchemaConfig = SchemaConfig()
    decode: DecodeConfig = DecodeConfig()
    augment: AugmentConfig = AugmentConfig()
    inference: InferenceConfig = InferenceConfig()
    encode: EncodeConfig = EncodeConfig()
    report: ReportConfig = ReportConfig()
    publish: PublishConfig = PublishConfig()
    beam: dict[str, Any] = Field(default_factory=dict, description="Beam pipeline options; flags override")

    def content(self) -> dict[str, Any]:
        """What decides the output's bytes: not where it runs, reads or writes, nor where the model lies
        (the model's own hash enters the fingerprint instead), nor the bar a run must pass to be published
        (a run that failed it is rerun, not up to date, whatever the bar is then), nor whether the model calls
        overlap the other stages (the same batches, the same bytes)."""
        return self.model_dump(mode="json", exclude={"beam": True, "input": True, "output": True, "publish": True,
                                                     "inference": {"model_dir", "overlap"}})


# --- the training job (aeops train) --------------------------------------------------------------


class ModelConfig(Strict):
    width: int = Field(32, ge=4, le=512, description="channels of the first level")
    depth: int = Field(3, ge=1, le=6, description="down-sampling levels")
    blocks: int = Field(2, ge=1, le=8, description="convolutions per level")
    residual: bool = Field(True, description="predict the noise and subtract it")
    full_resolution_blocks: int | None = Field(None, ge=0, le=8, description=(
        "convolutions per side at full resolution, where each costs as much as all of a deeper level's; "
        "null = blocks"))


class CorruptionConfig(Strict):
    sigma: Range(0, 255) = Field((0.0, 55.0), description="Gaussian noise std on the 0-255 scale, per sample")
    jpeg_p: float = Field(0.3, ge=0, le=1)
    jpeg_quality: Range(1, 100) = (30.0, 95.0)
    blur_p: float = Field(0.1, ge=0, le=1)
    blur_sigma: Range(0, 10) = (0.3, 1.2)
    clean_p: float = Field(0.0, ge=0, le=1, description=(
        "share of samples given no noise (blur and JPEG still apply): the identity on clean and lightly "
        "compressed photographs is then taught, not merely hoped for"))
    gray_p: float = Field(0.0, ge=0, le=1, description=(
        "share of samples made grey (three equal channels) before their noise, which is then grey too: a grey "
        "dataset decoded as RGB carries the same noise in every channel, which colour-only training never shows"))


class TrainConfig(Strict):
    seed: int = Field(0, ge=0, lt=2**63)
    data: str | None = Field(None, description="TFRecord glob; null = the embedded sample set")
    schema: SchemaConfig = SchemaConfig()
    model_dir: str | None = Field(None, description="where checkpoints and the SavedModel go")
    model: ModelConfig = ModelConfig()
    corruption: CorruptionConfig = CorruptionConfig()
    loss: Literal["mse", "log-mse", "l1", "ssim", "mse+ssim"] = "mse"
    batch_size: int = Field(16, ge=1, le=1024)
    crop_size: int = Field(96, ge=16, le=1024)
    steps_per_epoch: int = Field(200, ge=1)
    epochs: int = Field(100, ge=1)
    learning_rate: float = Field(1e-3, gt=0, le=1)
    ema_momentum: float | None = Field(None, gt=0, lt=1, description=(
        "validate and export an exponential moving average of the weights (e.g. 0.999); null = the last weights"))
    validation_fraction: float = Field(0.1, ge=0, lt=1)
    max_minutes: float = Field(60.0, gt=0, description="stop cleanly and export after this long")
    init_from: str | None = Field(None, description=(
        "a model 'aeops train' exported (e.g. aeops/pretrained/denoiser): a model_dir without checkpoints starts "
        "from its weights and continues its epochs, steps and minutes toward epochs and max_minutes; a model of "
        "another architecture is a warm start instead: the layers of the same name and shape copied, fresh counts"))
    mixed_precision: Literal["auto", "on", "off", "bfloat16"] = Field("auto", description=(
        "auto/on: float16 on a GPU; bfloat16: bfloat16 compute on any device (about 1.8x float32's speed on "
        "CPUs with AVX-512 BF16 or AMX); off: float32. Variables stay float32 and the export is float32"))


# --- loading -------------------------------------------------------------------------------------

ConfigT = TypeVar("ConfigT", bound=Strict)


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b=c`` -> (["a", "b"], c), the value read as YAML (``3`` is an int, ``[1, 2]`` a list)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set augment.variants=8")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return data


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found: pass an existing YAML file, e.g. configs/local.yaml")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {str(path)!r}{where}: not valid YAML") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r}: the top level must be a mapping of sections")
    return data


def load(cls: type[ConfigT], path: str | Path | None = None, overrides: list[str] | None = None) -> ConfigT:
    """Read ``path`` (or start from defaults), apply ``--set`` overrides, validate into ``cls``."""
    data = read_yaml(path) if path else {}
    data = apply_overrides(data, list(overrides or []))
    return validate(cls, data)


def validate(cls: type[ConfigT], data: dict[str, Any]) -> ConfigT:
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe(cls, exc.errors()[0])) from None


def describe(cls: type[BaseModel], error: dict[str, Any]) -> str:
    """One line for one pydantic error: the dotted key, and what is allowed there."""
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        allowed = ", ".join(sorted(_model_at(cls, loc[:-1]).model_fields))
        return f"config: unknown key {key!r}; allowed here: {allowed}"
    field = _field_at(cls, loc)
    hint = f" ({field.description})" if field is not None and field.description else ""
    message = error["msg"].removeprefix("Value error, ")
    shown = repr(error.get("input"))
    value = f" = {shown}" if len(shown) <= 60 else ""
    return f"config: {key}{value}: {message}{hint}"


def _model_at(cls: type[BaseModel], loc: list[str]) -> type[BaseModel]:
    for part in loc:
        field = cls.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        cls = annotation
    return cls


def _field_at(cls: type[BaseModel], loc: list[str]):
    if not loc:
        return None
    return _model_at(cls, loc[:-1]).model_fields.get(loc[-1])


def canonical_json(config: BaseModel | dict[str, Any]) -> str:
    """Sorted keys, no whitespace: equal configs give equal strings, hence equal fingerprints."""
    data = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
