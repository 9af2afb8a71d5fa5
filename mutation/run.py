"""``make mutation``: mutation testing of the core modules with cosmic-ray, sampled to fit a small machine.

    python mutation/run.py [--sample 20] [--seed 0] [--modules seeding,codec] [--tests-from REV]

Each core module is mutated alone and checked against its own fast test files only (the pytest arguments in
:data:`MODULES`), so one mutant costs one short pytest run. cosmic-ray lists every mutant of a module; a fixed,
seeded sample of ``--sample`` of them runs (``--sample 0``: all of them). cosmic-ray rewrites the files it
mutates, so everything runs in a copy of the checkout under ``build/mutation/tree``, never in the checkout.

Incremental: a module's results are kept in ``build/mutation/<module>.sqlite`` with a key of its source, its
tests and the sample; a later run reuses them while the key holds, and an interrupted run picks up where it
stopped. A surviving mutant is either killed by a new test or listed in ``mutation/equivalent.yaml`` with the
reason it cannot be told apart from the original; the run ends with status 1 while any survivor is neither.
``--tests-from REV`` takes ``tests/`` from a git revision (the mutation score of older tests on today's code).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import random
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml
from cosmic_ray.commands import execute, init
from cosmic_ray.config import ConfigDict
from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "mutation"
EQUIVALENT = Path(__file__).with_name("equivalent.yaml")
NO_TENSORFLOW = "-k 'not tensorflow'"  # two schema tests only check TensorFlow reads our bytes: a 5 s import each run

# module -> (its source files, the pytest arguments that run its own fast tests)
MODULES = {
    "seeding": (["aeops/seeding.py"], "tests/test_seeding.py"),
    "codec": (["aeops/codec.py"], "tests/test_codec.py"),
    "tfrecord": (["aeops/tfrecord.py"], f"tests/test_tfrecord.py tests/test_schema.py {NO_TENSORFLOW}"),
    "schema": (["aeops/schema.py"], f"tests/test_schema.py {NO_TENSORFLOW}"),
    "ops": (sorted(f"aeops/ops/{p.name}" for p in (ROOT / "aeops" / "ops").glob("*.py")),
            "tests/test_ops.py tests/test_ops_properties.py tests/test_targets.py"),
    "accounting": (["aeops/accounting.py"], "tests/test_accounting.py"),
    "publish": (["aeops/publish.py"], "tests/test_publish.py -k 'not fingerprint and not list_inputs and not sha256'"),
    "fingerprint": (["aeops/fingerprint.py"],
                    "tests/test_fingerprint.py tests/test_publish.py -k 'fingerprint or list_inputs or sha256'"),
    "inference": (["aeops/inference.py"], "tests/test_inference.py"),
}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    tree = copy_tree(args.tests_from)
    equivalent = load_equivalent()
    rows, unexplained = [], []
    for name in args.modules:
        sources, tests = MODULES[name]
        db_path = WORK / (f"{name}.sqlite" if not args.tests_from else f"{name}@{args.tests_from}.sqlite")
        run_module(name, sources, tests, tree, db_path, args)
        counts, survivors = tally(db_path, tree)
        explained = [s for s in survivors if (s["file"], s["before"], s["after"]) in equivalent]
        unexplained += [s for s in survivors if s not in explained]
        rows.append((name, counts, len(explained)))
    print(report(rows, unexplained, args))
    return 1 if unexplained else 0


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=20, help="mutants per module (0 = all; default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    parser.add_argument("--modules", default=",".join(MODULES), help="comma-separated, of: " + ", ".join(MODULES))
    parser.add_argument("--tests-from", metavar="REV", help="take tests/ from this git revision")
    args = parser.parse_args(argv)
    args.modules = [m.strip() for m in args.modules.split(",") if m.strip()]
    unknown = sorted(set(args.modules) - set(MODULES))
    if unknown:
        parser.error(f"unknown module {unknown[0]!r}; choose from {', '.join(MODULES)}")
    return args


def copy_tree(tests_from: str | None) -> Path:
    """The checkout's files (tracked and new, not ignored) copied to build/mutation/tree, fresh each run."""
    tree = WORK / ("tree" if not tests_from else f"tree@{tests_from}")
    shutil.rmtree(tree, ignore_errors=True)
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        if (ROOT / rel).is_file():
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, tree / rel)
    if tests_from:
        shutil.rmtree(tree / "tests")
        archive = subprocess.run(["git", "archive", tests_from, "tests"], cwd=ROOT, check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def test_command(tests: str) -> str:
    return shlex.join([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                       "-m", "not slow", *shlex.split(tests)])


def run_module(name: str, sources: list[str], tests: str, tree: Path, db_path: Path, args) -> None:
    # The key: the module, its own test files and the tests' shared helpers (conftest, image and shard makers).
    helpers = [p.relative_to(tree).as_posix() for p in tree.glob("tests/*.py") if not p.name.startswith("test_")]
    own = [a for a in shlex.split(tests) if a.startswith("tests/") and (tree / a).is_file()]
    key = hashlib.sha256(repr((sources, tests, args.sample, args.seed)).encode())
    for path in sorted({*sources, *own, *helpers}):
        key.update(path.encode() + b"\0" + (tree / path).read_bytes())
    key_path = db_path.with_suffix(".key")
    fresh = not (db_path.exists() and key_path.exists() and key_path.read_text() == key.hexdigest())
    # cosmic-ray's module paths and the test command are relative to the copy.
    with contextlib.chdir(tree), use_db(str(db_path), WorkDB.Mode.create) as db:
        if fresh:
            key_path.unlink(missing_ok=True)
            init([Path(s) for s in sources], db, {})
            keep_sample(db, args.sample, args.seed)
            key_path.write_text(key.hexdigest())
        pending = [w.job_id for w in db.pending_work_items]
        if pending and not own:
            print(f"mutation: {name}: no tests of its own in this tree: its mutants all survive", flush=True)
            db.set_multiple_results(pending, WorkResult(worker_outcome=WorkerOutcome.NORMAL, output="no tests",
                                                        test_outcome=TestOutcome.SURVIVED, diff=""))
        elif pending:
            command = test_command(tests)
            started = time.monotonic()
            baseline = subprocess.run(shlex.split(command), capture_output=True, text=True)
            if baseline.returncode != 0:
                sys.exit(f"mutation: {name}: its tests fail before any mutation:\n{baseline.stdout[-3000:]}")
            seconds = time.monotonic() - started
            timeout = max(30.0, 5 * seconds)
            print(f"mutation: {name}: {len(pending)} mutant(s), tests {seconds:.0f} s unmutated", flush=True)
            execute(db, ConfigDict({"test-command": command, "timeout": timeout, "distributor": {"name": "local"}}))


def keep_sample(db: WorkDB, size: int, seed: int) -> None:
    """Leave ``size`` mutants pending, drawn with ``seed`` from a stable order; mark the others skipped."""
    items = sorted(db.work_items, key=lambda w: [(str(m.module_path), m.operator_name, m.occurrence) for m in w.mutations])
    if size <= 0 or size >= len(items):
        return
    kept = set(w.job_id for w in random.Random(seed).sample(items, size))
    db.set_multiple_results([w.job_id for w in items if w.job_id not in kept],
                            WorkResult(worker_outcome=WorkerOutcome.SKIPPED))


def tally(db_path: Path, tree: Path) -> tuple[dict, list[dict]]:
    """Counts by outcome, and each survivor as {file, line, operator, before, after} (lines stripped).

    A survivor inside a type annotation of a module with ``from __future__ import annotations`` counts as
    equivalent without a listing: such annotations are never evaluated, so nothing can tell the mutant apart.
    """
    counts = {"killed": 0, "survived": 0, "timeout": 0, "incompetent": 0, "annotation": 0, "total": 0}
    survivors = []
    with use_db(str(db_path), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            counts["total"] += 1
            if result.worker_outcome != WorkerOutcome.NORMAL or result.test_outcome == TestOutcome.INCOMPETENT:
                counts["incompetent"] += 1
            elif result.test_outcome == TestOutcome.KILLED:
                counts["timeout" if result.output == "timeout" else "killed"] += 1
            elif in_lazy_annotation(tree / item.mutations[0].module_path, item.mutations[0].start_pos):
                counts["annotation"] += 1
            else:
                counts["survived"] += 1
                survivors.append(survivor(item, result))
    return counts, survivors


def in_lazy_annotation(path: Path, position: tuple[int, int]) -> bool:
    tree = ast.parse(path.read_text())
    lazy = any(isinstance(node, ast.ImportFrom) and node.module == "__future__"
               and any(alias.name == "annotations" for alias in node.names) for node in tree.body)
    if not lazy:
        return False
    spans = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            spans.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
            spans.append(node.returns)
    return any((n.lineno, n.col_offset) <= tuple(position) < (n.end_lineno, n.end_col_offset) for n in spans)


def survivor(item, result) -> dict:
    removed = [line[1:].strip() for line in result.diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line[1:].strip() for line in result.diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    mutation = item.mutations[0]
    return {"file": str(mutation.module_path), "line": mutation.start_pos[0], "operator": mutation.operator_name,
            "before": " / ".join(removed), "after": " / ".join(added)}


def load_equivalent() -> set[tuple[str, str, str]]:
    entries = yaml.safe_load(EQUIVALENT.read_text()) or []
    return {(e["file"], e["before"], e["after"]) for e in entries}


def report(rows, unexplained, args) -> str:
    lines = [f"mutation: cosmic-ray, {args.sample or 'all'} mutant(s) per module, seed {args.seed}"
             + (f", tests from {args.tests_from}" if args.tests_from else ""), "",
             "| module | mutants | killed | timed out | incompetent | in annotations | survived | of which listed "
             "equivalent | score |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    fields = ("total", "killed", "timeout", "incompetent", "annotation", "survived")
    total = dict.fromkeys(fields, 0)
    listed = 0
    for name, c, equivalent in rows:
        lines.append(f"| {name} | " + " | ".join(str(c[f]) for f in fields) + f" | {equivalent} | {score(c, equivalent)} |")
        total = {f: total[f] + c[f] for f in fields}
        listed += equivalent
    lines.append("| all | " + " | ".join(str(total[f]) for f in fields) + f" | {listed} | {score(total, listed)} |")
    lines += ["", "score = (killed + timed out) / (mutants - incompetent - in annotations - listed equivalent)"]
    for s in unexplained:
        lines.append(f"SURVIVED {s['file']}:{s['line']} {s['operator']}\n    - {s['before']}\n    + {s['after']}")
    return "\n".join(lines)


def score(c: dict, equivalent: int) -> str:
    judged = c["total"] - c["incompetent"] - c["annotation"] - equivalent
    return f"{100 * (c['killed'] + c['timeout']) / judged:.0f}%" if judged else "-"


if __name__ == "__main__":
    sys.exit(main())
