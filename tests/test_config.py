import json
from pathlib import Path

import pytest

from aeops import config
from aeops.config import PipelineConfig, TrainConfig
from aeops.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


CONFIGS = Path(__file__).resolve().parent.parent / "configs"
SHIPPED = {"local.yaml": PipelineConfig, "all-ops.yaml": PipelineConfig, "dataflow.yaml": PipelineConfig,
           "dataflow-gpu.yaml": PipelineConfig, "train.yaml": TrainConfig, "pretrained.yaml": TrainConfig,
           "pretrained-photos.yaml": TrainConfig, "pretrained-balanced.yaml": TrainConfig,
           "pretrained-fast.yaml": TrainConfig}


def test_every_shipped_config_is_known():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_config_loads_with_every_value_it_sets(name):
    """Found from the checkout, not the working directory; every value the file sets is the value loaded."""
    path = CONFIGS / name
    loaded = config.load(SHIPPED[name], path).model_dump(mode="json")
    written = json.loads(json.dumps(config.read_yaml(path)))
    assert written and _differences(written, loaded) == []


def _differences(written, loaded, where="") -> list[str]:
    """Paths where ``loaded`` does not hold what ``written`` set (ranges compare as lists)."""
    if isinstance(written, dict):
        if not isinstance(loaded, dict):
            return [where]
        return [d for key, value in written.items() for d in _differences(value, loaded.get(key), f"{where}.{key}")]
    return [] if written == loaded else [f"{where}: {written!r} != {loaded!r}"]


def test_defaults_and_overrides(tmp_path):
    cfg = config.load(PipelineConfig, write(tmp_path, "augment:\n  variants: 3\n"), ["inference.max_batch_size=32"])
    assert cfg.augment.variants == 3 and cfg.inference.max_batch_size == 32
    assert cfg.augment.outputs_per_record == 4
    cfg = config.load(PipelineConfig, None, ["augment.keep_original=false", "encode.format=png", "seed=7"])
    assert (cfg.augment.keep_original, cfg.encode.format, cfg.seed) == (False, "png", 7)


@pytest.mark.parametrize(
    "text, overrides, expected",
    [
        ("augment:\n  variantz: 3\n", [], "unknown key 'augment.variantz'; allowed here: keep_original, ops, variants"),
        ("", ["inference.max_batch_size=0"], "inference.max_batch_size = 0: Input should be greater than or equal to 1"),
        ("", ["encode.format=gif"], "encode.format = 'gif': Input should be 'jpeg', 'png' or 'webp'"),
        ("", ["inference.fraction=1.5"], "inference.fraction = 1.5"),
        ("", ["bogus=1"], "unknown key 'bogus'"),
        ("", ["augment.variants=0", "augment.keep_original=false"], "nothing would be written"),
        ("augment: [1, 2", [], "not valid YAML"),
        ("- a\n- b\n", [], "top level must be a mapping"),
        ("", ["novalue"], "expected KEY=VALUE"),
    ],
)
def test_errors_are_one_line_naming_the_key(tmp_path, text, overrides, expected):
    with pytest.raises(ConfigError) as info:
        config.load(PipelineConfig, write(tmp_path, text), overrides)
    message = str(info.value)
    assert expected in message and "\n" not in message
    assert info.value.exit_code == 2


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        config.load(PipelineConfig, "nope.yaml")


def test_train_ranges_validated():
    with pytest.raises(ConfigError, match="corruption.sigma"):
        config.load(TrainConfig, None, ["corruption.sigma=[30, 10]"])


def test_canonical_json_is_order_independent(tmp_path):
    a = config.load(PipelineConfig, write(tmp_path, "seed: 1\naugment:\n  variants: 2\n  keep_original: false\n"))
    b = config.load(PipelineConfig, None, ["augment.keep_original=false", "augment.variants=2", "seed=1"])
    assert config.canonical_json(a) == config.canonical_json(b)
    assert json.loads(config.canonical_json(a))["augment"]["variants"] == 2
    assert "beam" not in a.content() and "output" not in a.content()


def test_schema_presets_fill_names_and_single_names_override():
    default = config.load(PipelineConfig).schema
    assert (default.preset, default.image, default.key, default.boxes) == ("od-api", "image/encoded", "image/key",
                                                                          "image/object/bbox")
    tfds = config.load(PipelineConfig, None, ["schema.preset=tfds"]).schema
    assert (tfds.image, tfds.key, tfds.label, tfds.boxes, tfds.box_format) == ("image", None, "label", "objects/bbox", "tfds")
    over = config.load(PipelineConfig, None, ["schema.preset=tfds", "schema.image=jpeg", "schema.min_box_visibility=0.5"])
    assert (over.schema.image, over.schema.boxes, over.schema.min_box_visibility) == ("jpeg", "objects/bbox", 0.5)
    plain = config.load(TrainConfig, None, ["schema.preset=classification"]).schema
    assert plain.image == "image/encoded" and plain.boxes is plain.keypoints is plain.mask is None
    assert config.validate(PipelineConfig, json.loads(config.canonical_json(over))) == over  # manifests reload


@pytest.mark.parametrize("override, expected", [
    ("schema.preset=coco", "schema.preset = 'coco': Input should be 'od-api', 'tfds' or 'classification'"),
    ("schema.imag=x", "unknown key 'schema.imag'; allowed here: box_format, boxes, image, key"),
    ("schema.min_box_visibility=2", "schema.min_box_visibility = 2: Input should be less than or equal to 1"),
])
def test_schema_errors_name_the_key(override, expected):
    with pytest.raises(ConfigError) as info:
        config.load(PipelineConfig, None, [override])
    assert expected in str(info.value)
