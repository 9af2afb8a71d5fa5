"""The command line as a user meets it: subprocesses, exit codes, one line on stderr."""

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aeops import cli, codec
from aeops.sample import data_dir

REPO = Path(__file__).resolve().parent.parent


def aeops(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "aeops", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_help_lists_every_command():
    result = aeops("--help")
    assert result.returncode == 0
    for name in ("ingest", "train", "augment", "preview", "evaluate", "stats"):
        assert name in result.stdout


@pytest.mark.parametrize(
    "args, code, text",
    [
        (["frobnicate"], 2, "unknown command 'frobnicate'"),
        (["ingest", "--output", "x", "missing-dir/*.png"], 2, "matches no image file"),
        (["ingest", "--bogus-flag", "--sample", "--output", "x"], 2, "unrecognized arguments: --bogus-flag"),
    ],
)
def test_errors_are_one_clear_line(args, code, text):
    result = aeops(*args)
    assert result.returncode == code
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and text in lines[0]


def test_module_entry_points_share_the_guard(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.ingest", "--output", str(tmp_path / "x"), str(tmp_path / "none.png")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0


@pytest.mark.parametrize("flag, hint", [("--runer=DataflowRunner", "did you mean --runner?"), ("--frobnicate", "--help")])
def test_augment_rejects_flags_beam_does_not_know(tmp_path, flag, hint):
    """Beam would drop an unknown flag with a log line and run something else than asked."""
    result = aeops("augment", "--config", "configs/local.yaml", "--input", str(tmp_path / "*.tfrecord"),
                   "--output", str(tmp_path / "out"), "--set", "inference.enabled=false", flag)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and flag.split("=")[0] in lines[0] and hint in lines[0]


def test_warnings_not_shown_are_kept_in_a_log_file(capsys):
    """Without --verbose Beam's warnings stay off the terminal, but not lost: the run's summary names the file."""

    def job(argv):
        logging.getLogger("apache_beam.io.filesystem").warning("something Beam wants said")
        print(f"log: {cli.kept_log()}")

    assert cli.guarded(job, []) == 0
    out, err = capsys.readouterr()
    path = out.split("log: ", 1)[1].strip()
    assert "something Beam wants said" in open(path).read() and "something Beam wants said" not in err
    assert cli.guarded(lambda argv: print(f"log: {cli.kept_log()}"), []) == 0
    assert capsys.readouterr().out.strip() == "log: None"  # nothing logged, no file named


@pytest.mark.parametrize(
    "args, text",
    [
        (["train", "--model-dir", "{tmp}/m", "--data", "{tmp}/none-*.tfrecord"], "matches no files"),
        (["evaluate", "--model-dir", "{tmp}/broken", "--images", "{coins}"], "cannot be loaded"),
        (["preview", "--config", "configs/all-ops.yaml", "--images", "{tmp}/tiny.png", "--variants", "0"], "at least 1"),
    ],
)
def test_train_evaluate_and_preview_fail_in_exactly_one_line(tmp_path, args, text):
    """Also once TensorFlow and its native libraries have written to file descriptor 2 as they start."""
    (tmp_path / "tiny.png").write_bytes(codec.encode(np.zeros((5, 6, 3), np.uint8), "png"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "saved_model.pb").write_bytes(b"not a SavedModel")
    coins = data_dir() / "coins.png"
    result = aeops(*(arg.format(tmp=tmp_path, coins=coins) for arg in args), cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("aeops: ") and text in result.stderr, result.stderr
