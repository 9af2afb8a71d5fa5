"""``aeops augment`` / ``python -m pipelines.augment``: the main job, one versioned dataset per run.

Parses the project's flags (everything else goes to Beam's ``PipelineOptions``), decides the version
(fingerprint of inputs, resolved config, model and aeops version), stops early when that version is
already complete, and wires the stages of :mod:`aeops.stages`. The last step, inside the pipeline so that
it runs on Dataflow too, checks the counts, writes the report and ``manifest.json`` (the version's last
file) and only then moves ``LATEST``.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import sys
import tempfile
import time

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import (DirectOptions, PipelineOptions, StandardOptions, TestOptions,
                                                  _BeamArgumentParser)
from apache_beam.runners.runner import PipelineState

from aeops import __version__, config, dataflow_job, inference, preflight, stages, statistics, storage
from aeops.accounting import records_line
from aeops.cli import ArgumentParser, kept_log
from aeops.dataset_summary import describe
from aeops.config import PipelineConfig
from aeops.errors import AeopsError, UsageError
from aeops.fingerprint import fingerprint, list_inputs, model_sha256, version_name
from aeops.inference import NAMESPACE
from aeops.progress import Meter
from aeops.publish import MANIFEST, Publisher, PublishRaceError


def parse_args(argv: list[str] | None):
    parser = ArgumentParser(
        prog="aeops augment",
        description="Augment and restore TFRecord shards into ROOT/v-<fingerprint>/; unknown flags go to Beam.",
    )
    parser.add_argument("--config", default=None, help="pipeline YAML, e.g. configs/local.yaml")
    parser.add_argument("--input", default=None, metavar="GLOB", help="TFRecord shards, local or gs://")
    parser.add_argument("--output", default=None, metavar="ROOT", help="dataset root, local or gs://")
    parser.add_argument("--model-dir", default=None, metavar="DIR", help="SavedModel (default: the shipped model)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    parser.add_argument("--force", action="store_true", help="run even when this version is already complete")
    parser.add_argument("--keep", type=int, default=0, metavar="N", help="then delete all but the N newest versions")
    parser.add_argument("--wait", action="store_true",
                        help="on Dataflow: follow the job until it ends, then print the run's summary")
    return parser.parse_known_args(argv)


def resolve(args) -> tuple[PipelineConfig, str, str, str | None]:
    """(config, input glob, output root, model dir or None when the model stage is off)."""
    cfg = config.load(PipelineConfig, args.config, args.set)
    pattern, root = args.input or cfg.input, args.output or cfg.output
    if not pattern:
        raise UsageError("augment: no input; pass --input GLOB or set input: in the config")
    pattern = storage.shard_pattern(pattern)
    if not root:
        raise UsageError("augment: no output; pass --output ROOT or set output: in the config")
    if args.keep < 0:
        raise UsageError("augment: --keep must be >= 1 (0 = keep every version)")
    if not cfg.inference.enabled or cfg.inference.fraction == 0:
        return cfg, pattern, root, None
    from aeops.model import PRETRAINED

    model_dir = args.model_dir or cfg.inference.model_dir or str(PRETRAINED)
    if not storage.exists(storage.join(model_dir, "saved_model.pb")):
        raise UsageError(f"augment: model {model_dir!r} has no saved_model.pb; pass --model-dir with a SavedModel "
                         "written by 'aeops train', or --set inference.enabled=false")
    return cfg, pattern, root, model_dir


def check(inputs: list[dict], model_dir: str | None, image_feature: str, keep: bool = False,
          precision: str = "float32"):
    """Fail before anything runs when the first shard's records lack the image feature or the model is not
    CONTRACT §5's: either would otherwise dead-letter every record and write an empty version.

    Returns the model the check loaded when ``keep`` (the pipeline will run it in this process), else None.
    """
    preflight.check_schema(inputs[0]["name"], image_feature, "augment")
    if model_dir:
        model = preflight.check_model(model_dir, "augment", precision)
        return model if keep else None
    return None


def runs_in_this_process(options: PipelineOptions) -> bool:
    """Whether the runner executes the pipeline's stages in this process: the DirectRunner, in memory or
    multi-threaded (not ``--direct_running_mode=multi_processing``, not a remote runner)."""
    runner = (options.view_as(StandardOptions).runner or "DirectRunner").lower()
    return runner in ("directrunner", "direct") and (
        options.view_as(DirectOptions).direct_running_mode != "multi_processing")


def beam_options(cfg: PipelineConfig, beam_argv: list[str]) -> PipelineOptions:
    """The config's ``beam:`` section as flags, then the command line's Beam flags, which win.

    Beam drops flags it does not know with a log line; a typo (``--runer``) would then run something else
    than asked, so any flag no Beam option class knows is a usage error here.
    """
    flags = []
    for name, value in cfg.beam.items():
        if value is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            flags.append(f"--{name}" if item is True else f"--{name}={item}")
    flags += beam_argv
    unknown, known = unknown_flags(flags)
    if unknown:
        close = difflib.get_close_matches(unknown[0].split("=", 1)[0], known, n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]}?" if close else "; see 'aeops augment --help' and Beam's pipeline options"
        raise UsageError(f"augment: unknown flag {unknown[0]!r}{hint}")
    return PipelineOptions(flags, save_main_session=False)


def unknown_flags(flags: list[str]) -> tuple[list[str], list[str]]:
    """(flags no PipelineOptions class defines, every flag they define), parsed as Beam itself parses them."""
    parser = _BeamArgumentParser(allow_abbrev=False)  # Beam's own parser: value-provider arguments need it
    for cls in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
        cls._add_argparse_args(parser)  # noqa: SLF001 - what PipelineOptions.get_all_options does
    _, unknown = parser.parse_known_args(flags)
    known = [option for action in parser._actions for option in action.option_strings]  # noqa: SLF001
    return [flag for flag in unknown if flag.startswith("-")], known


def run(argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> int:
    """The command: 0 when the version is up to date, published, or handed to Dataflow; errors raise."""
    launch(argv, test_pipeline)
    return 0


def launch(argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None):
    """:func:`run`, returning Beam's ``PipelineResult`` (None when up to date): on Dataflow its ``job``
    is the job that was submitted, or only built with ``--dry_run=True``."""
    args, beam_argv = parse_args(argv)
    cfg, pattern, root, model_dir = resolve(args)
    options = beam_options(cfg, beam_argv)
    inputs = list_inputs(pattern)
    # The in-memory DirectRunner runs the model handler in this process: it takes the model the check loaded.
    checked_model = check(inputs, model_dir, cfg.schema.image, keep=runs_in_this_process(options),
                          precision=cfg.inference.precision)
    model_hash = model_sha256(model_dir) if model_dir else ""
    version = version_name(fingerprint(inputs, cfg.content(), model_hash, __version__))
    with Publisher(root) as publisher:
        latest = publisher.latest()
        complete = publisher.up_to_date(version)
        if complete and not args.force:
            if latest.name != complete:  # e.g. a reverted config: its dataset exists, so name it again
                publisher.publish(complete, latest.token)
            print(f"augment: up to date: {storage.join(root, complete)} already holds this input, config and "
                  f"model; LATEST -> {complete} (--force to run again)")
            print(locations(storage.join(root, complete)))
            return None
        runner = options.view_as(StandardOptions).runner or "DirectRunner"
        local = not runner.lower().startswith("dataflow")  # else no driver process waits for the job
        # Dataflow's --dry_run builds the job and submits nothing: leave ROOT as it is (no prepare).
        dry_run = not local and options.view_as(TestOptions).dry_run
        if dry_run:
            folder, token = publisher.next_folder(version), latest.token
        else:
            folder, token = publisher.prepare(version, latest.token)
        context = {
            "root": root, "version": folder, "token": token, "keep": args.keep, "fingerprint": version[2:],
            "config": cfg.model_dump(mode="json"), "inputs": inputs, "runner": runner,
            "model": {"path": model_dir, "sha256": model_hash} if model_dir else None,
            "variants": cfg.augment.outputs_per_record, "started": stages.now(), "aeops_version": __version__,
        }
        started = time.monotonic()
        with contextlib.ExitStack() as stack:
            stack.enter_context(inference.handed_over(model_dir, model_hash, checked_model))
            progress_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="aeops-progress-")) if local else None
            pipeline = test_pipeline or beam.Pipeline(options=options)
            build(pipeline, cfg, pattern, storage.join(root, folder), model_dir, model_hash, context, progress_dir)
            if local:
                stack.enter_context(Meter(progress_dir, sum(item["size"] or 0 for item in inputs)))
            try:
                result = pipeline.run()
                if local:
                    result.wait_until_finish()
            except Exception as error:  # noqa: BLE001 - Beam wraps what failed inside; show its last line
                raise translate(error) from None
        if not local:
            if dry_run:
                print(dataflow_job.dry_run_text(result.job.proto.name, folder, root, options))
                return result
            print(f"augment: submitted to Dataflow; {folder} is published to {root}/LATEST when the job finishes "
                  "and passes the publish gates")
            print(dataflow_job.follow(result.job_id(), options))
            if not args.wait:
                return result
            state = dataflow_job.wait(result)
            if state != PipelineState.DONE:
                raise AeopsError(f"augment: Dataflow job {result.job_id()} ended {state}: its console link above "
                                 "shows why; LATEST is unchanged")
    print(summary(json.loads(storage.read_bytes(storage.join(root, folder, MANIFEST))), root, folder,
                  time.monotonic() - started, decode_warnings(result)))
    return result


def build(pipeline, cfg, pattern, directory, model_dir, model_hash, context, progress=None):
    """Wire the stages: read -> augment -> restore -> encode -> write, dead letters, then finalize.

    ``progress``: the folder the stages' progress files go to (:mod:`aeops.progress`), or None for none.
    """
    per_record = cfg.augment.outputs_per_record
    read = pipeline | "ReadShards" >> stages.ReadShards(pattern, per_record, progress)
    augmented = read.records | "Augment" >> stages.Augment(cfg, restore=model_dir is not None)
    restored = augmented.variants | "Restore" >> stages.Restore(cfg, model_dir, model_hash)
    encoded = restored["restored"] | "Encode" >> stages.Encode(cfg, model_hash, progress)
    data_files = encoded.records | "WriteShards" >> stages.WriteShards(
        directory, "data", cfg.encode.num_shards, cfg.encode.compression == "gzip"
    )
    dead = (read.dead, augmented.dead, restored[stages.DEAD], encoded.dead) | "AllDeadLetters" >> beam.Flatten()
    dead_files = dead | "WriteDeadLetter" >> stages.WriteDeadLetter(directory, progress)
    inputs = read.records | "InputRecords" >> beam.Values()
    described = (
        inputs | "InputStatistics" >> statistics.DatasetStatistics(statistics.INPUT, cfg.schema),
        encoded.records | "OutputStatistics" >> statistics.DatasetStatistics(statistics.OUTPUT, cfg.schema),
    ) | "BothStatistics" >> beam.Flatten()
    parts = {
        "records": read.records, "damaged": read.dead, "outputs": encoded.records, "dead": dead,
        "stats": encoded.stats, "samples": encoded.sample, "data_files": data_files, "dead_files": dead_files,
        "statistics": described,
    }
    parts | "Finalize" >> stages.Finalize(context, cfg.report.samples)
    return pipeline


def translate(error: Exception) -> AeopsError:
    """The one line a user needs from an exception Beam re-raised from inside a stage.

    Beam re-raises a stage's failure wrapped in its own text (the traceback, "[while running ...]"); the
    errors aeops raises on purpose are found again by their message and come back as themselves.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for needle, cls in (("another run published first", PublishRaceError), ("counts do not reconcile", AeopsError),
                        ("not published: ", AeopsError)):
        for line in lines:
            if needle in line:
                message = line[line.index(needle):].split(" [while running", 1)[0]
                return cls(message)
    return AeopsError(f"augment: the pipeline failed: {type(error).__name__}: {lines[-1] if lines else ''}")


def decode_warnings(result) -> dict[str, int]:
    """How many library warnings decoding raised, by category: counted in the job, never printed by it."""
    prefix = stages.WARNINGS + "/"
    counts: dict[str, int] = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        name = counter.key.metric.name
        if name.startswith(prefix):
            counts[name[len(prefix):]] = counts.get(name[len(prefix):], 0) + (counter.committed or counter.attempted or 0)
    return counts


def summary(manifest: dict, root: str, version: str, seconds: float | None = None,
            warned: dict[str, int] | None = None) -> str:
    """What a finished run says: the accounting, rates, the model, dead letters, the library warnings counted
    while decoding, the dataset, where things are."""
    dead = manifest["dead_letter"]
    metrics = manifest["metrics"]
    directory = storage.join(root, version)
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    lines = [
        f"augment: done{took}; {root}/LATEST -> {version}",
        records_line(manifest),
        f"  rate      {metrics['throughput']['records_per_s']:.2f} records/s, "
        f"{metrics['throughput']['outputs_per_s']:.2f} variants/s",
    ]
    if metrics.get("psnr"):
        lines.append(
            f"  model     {metrics['restored']} variants restored, PSNR vs input {metrics['psnr']['mean']:.2f} dB, "
            f"SSIM {metrics['ssim']['mean']:.4f}, padding +{100 * metrics['padding_overhead']:.1f}%"
        )
    for reason, n in sorted(dead["by_reason"].items()):
        lines.append(f"  dead      {reason}: {n}")
    for category, n in sorted((warned or {}).items()):
        lines.append(f"  warnings  {n} {category} from the image libraries while decoding (counted, not shown)")
    lines.append(describe(manifest.get("summary")))
    log = kept_log()
    if log:
        lines.append(f"  log       {log} (Beam's and TensorFlow's warnings; --verbose shows them instead)")
    return "\n".join(lines + [locations(directory)])


def locations(directory: str) -> str:
    return "\n".join([
        f"  output    {storage.join(directory, 'data-*')}",
        f"  manifest  {storage.join(directory, MANIFEST)}",
        f"  stats     {storage.join(directory, statistics.STATISTICS)}",
        f"  report    {storage.join(directory, 'report.html')}",
    ])


if __name__ == "__main__":
    from aeops.cli import guarded

    sys.exit(guarded(run, sys.argv[1:]))
