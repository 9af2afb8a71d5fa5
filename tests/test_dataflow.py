"""Dataflow submission of configs/dataflow*.yaml, as far as it goes without Google: a dry run against the GCS emulator.

``--runner=DataflowRunner --dry_run=True`` makes Beam build the whole Dataflow job (the runner API graph, the
worker environment, the sdist of ``--setup_file``) and stop before it talks to the Dataflow service. In Beam
2.77 the dry run stops one step earlier than its name suggests: ``DataflowRunner.run_pipeline`` returns the
``apiclient.Job`` before ``DataflowApplicationClient.create_job``, which is where the artifacts are staged and
the job's ``Environment`` (worker pools, container images, service options) is filled in. So each test then
calls Beam's own ``create_job_description`` on that job: the staging half of a real submission, into the
emulator bucket, without ``submit_job_description``. Nothing here is mocked; there are no credentials on a CI
machine, and ``tests/gcs_servers.py`` tells Beam so, which makes both its GCS client and its Dataflow client
anonymous (the latter is never called).
"""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import pytest
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.dataflow.internal.apiclient import DataflowApplicationClient
from apache_beam.version import __version__ as beam_version
from google.cloud import storage as gcs
from google.protobuf import json_format

from aeops import storage, tfrecord
from pipelines import augment
from tests import shards

REPO = Path(__file__).resolve().parent.parent
IMAGE = "us-central1-docker.pkg.dev/test-project/aeops/sdk:0.1.0"
ACCELERATOR = "worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver"
# The stages of pipelines.augment.build, by the labels Dataflow shows (and --update maps by).
STAGES = ("ReadShards", "Augment", "Restore/RunInference", "Encode", "WriteShards", "WriteDeadLetter", "Finalize")


@pytest.fixture
def bucket(gcs_emulator, tiny_model_dir, monkeypatch):
    """A fresh emulator bucket with two input shards and a SavedModel under gs://BUCKET/model, where Dataflow
    workers read models from. The configs' ``setup_file: ./setup.py`` is relative to the checkout."""
    monkeypatch.chdir(REPO)
    for i, image in enumerate(shards.good_images()[:2]):
        storage.write_bytes(f"gs://{gcs_emulator}/in/part-{i}.tfrecord", tfrecord.frame(shards.example(image)))
    for path in Path(tiny_model_dir).rglob("*"):
        if path.is_file():
            storage.write_bytes(f"gs://{gcs_emulator}/model/{path.relative_to(tiny_model_dir).as_posix()}",
                                path.read_bytes())
    return gcs_emulator


def dry_run(bucket: str, config: str, *flags: str):
    """``aeops augment`` with the README's Dataflow flags and ``--dry_run=True``, then Beam's staging of the
    built job into the bucket; returns Beam's ``apiclient.Job``."""
    argv = [
        "--config", config, "--input", f"gs://{bucket}/in/*.tfrecord", "--output", f"gs://{bucket}/out",
        "--model-dir", f"gs://{bucket}/model",
        "--runner=DataflowRunner", "--dry_run=True", "--project=test-project", "--region=us-central1",
        f"--temp_location=gs://{bucket}/tmp", f"--staging_location=gs://{bucket}/staging", *flags,
    ]
    result = augment.launch(argv)
    assert result is not None, "a fresh bucket holds no complete version: the job must be built"
    job = result.job
    assert not job.proto.environment.worker_pools  # where the dry run stops: nothing staged yet
    DataflowApplicationClient(job.options).create_job_description(job)
    return job


def objects(bucket: str, prefix: str) -> dict:
    client = gcs.Client(project="test")
    return {blob.name: blob for blob in client.list_blobs(bucket, prefix=prefix)}


def check_common(bucket: str, job, capsys) -> dict:
    """What both configs promise. Returns the pipeline options as the workers get them, the worker pool and
    the staged sdist's bytes."""
    out = capsys.readouterr().out
    assert "dry run" in out and "submitted to Dataflow" not in out
    # The job's name, and how a real job is followed: its console page and the gcloud commands.
    assert f"the Dataflow job {job.proto.name} for v-" in out and job.proto.name.startswith("beamapp-")
    assert "https://console.cloud.google.com/dataflow/jobs/us-central1/JOB_ID?project=test-project" in out
    for verb in ("describe", "cancel"):
        assert f"gcloud dataflow jobs {verb} JOB_ID --region=us-central1 --project=test-project" in out
    assert "--wait" in out
    assert objects(bucket, "out/") == {}, "a dry run leaves the output root alone"

    # The graph Dataflow runs has our stages, under their labels.
    names = {t.unique_name for t in job.proto_pipeline.components.transforms.values()}
    assert set(STAGES) <= names, f"missing stages: {sorted(set(STAGES) - names)}"

    # Everything Beam staged for this job is in the emulator bucket, beside the graph it stages.
    staging = job.google_cloud_options.staging_location
    assert staging.startswith(f"gs://{bucket}/staging/")
    folder = staging[len(f"gs://{bucket}/"):] + "/"
    staged = objects(bucket, folder)
    assert {folder + "pipeline.pb", folder + "workflow.tar.gz"} <= set(staged)
    pool = job.proto.environment.worker_pools[0]
    packages = {p.name: p.location for p in pool.packages}
    assert packages["workflow.tar.gz"] == f"storage.googleapis.com/{bucket}/{folder}workflow.tar.gz"
    urls = set()
    for env in job.proto_pipeline.components.environments.values():
        for dep in env.dependencies:
            urls.add(beam_runner_api_pb2.ArtifactUrlPayload.FromString(dep.type_payload).url)
    assert f"{staging}/workflow.tar.gz" in urls  # the workers' environment installs the staged sdist

    options = json_format.MessageToDict(job.proto.environment._pb.sdk_pipeline_options)["options"]
    assert options["project"] == "test-project" and options["region"] == "us-central1"
    assert options["temp_location"].startswith(f"gs://{bucket}/tmp/")
    assert options["sdk_location"] == "container"
    assert options["experiments"].count("use_runner_v2") == 1
    return {"options": options, "pool": pool, "sdist": staged[folder + "workflow.tar.gz"].download_as_bytes()}


def sdist_names(data: bytes) -> set[str]:
    """Paths inside the sdist, without its ``aeops-VERSION/`` top folder."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        return {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}


def test_gpu_config_builds_a_job_with_the_accelerator_the_image_and_our_sdist(bucket, capsys):
    job = dry_run(bucket, "configs/dataflow-gpu.yaml", f"--sdk_container_image={IMAGE}")
    built = check_common(bucket, job, capsys)
    environment, pool, options = job.proto.environment, built["pool"], built["options"]

    assert ACCELERATOR in environment.service_options
    assert options["dataflow_service_options"] == [ACCELERATOR]
    assert pool.machine_type == "n1-standard-8" and pool.disk_size_gb == 80
    assert pool.autoscaling_settings.max_num_workers == 4

    # Every environment of the job, and so every worker, runs our image.
    assert pool.worker_harness_container_image == IMAGE
    assert [i.container_image for i in pool.sdk_harness_container_images] == [IMAGE]
    for env in job.proto_pipeline.components.environments.values():
        assert beam_runner_api_pb2.DockerPayload.FromString(env.payload).container_image == IMAGE
    assert options["sdk_container_image"] == IMAGE

    # setup_file from the config was honoured: an sdist of this checkout is what the workers install.
    assert options["setup_file"] == "./setup.py"
    names = sdist_names(built["sdist"])
    assert {"setup.py", "aeops/publish.py", "aeops/stages.py", "pipelines/augment.py"} <= names
    pretrained = REPO / "aeops" / "pretrained"
    if pretrained.is_dir():  # the shipped model, when this checkout has it (`make pretrained`)
        shipped = {p.relative_to(REPO).as_posix() for p in pretrained.rglob("*") if p.is_file()}
        assert shipped <= names, f"the shipped model is not in the sdist: {sorted(shipped - names)[:5]}"


def test_cpu_config_builds_a_job_on_the_stock_image_and_ships_the_model_in_the_sdist(bucket, tmp_path, capsys):
    """Flags win over the config's ``beam:`` section: ``--setup_file`` here points at a copy of the project that
    has a SavedModel-shaped tree under aeops/pretrained/, which must reach the workers inside the sdist."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "setup.py", project / "setup.py")
    for package in ("aeops", "pipelines"):
        shutil.copytree(REPO / package, project / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    model = project / "aeops" / "pretrained" / "denoiser"
    (model / "variables").mkdir(parents=True, exist_ok=True)
    for rel in ("saved_model.pb", "fingerprint.pb", "aeops_model.json", "variables/variables.index",
                "variables/variables.data-00000-of-00001"):
        (model / rel).write_bytes(b"x")

    job = dry_run(bucket, "configs/dataflow.yaml", f"--setup_file={project / 'setup.py'}", "--max_num_workers=3")
    built = check_common(bucket, job, capsys)
    environment, pool, options = job.proto.environment, built["pool"], built["options"]

    assert not any(o.startswith("worker_accelerator") for o in environment.service_options)
    assert not options.get("dataflow_service_options"), options.get("dataflow_service_options")
    assert pool.machine_type == "n2-standard-8" and pool.disk_size_gb == 50
    assert pool.autoscaling_settings.max_num_workers == 3  # the flag, not the config's 20

    # No image in this config: the workers run Beam's own SDK image of the pinned Beam version.
    images = {i.container_image for i in pool.sdk_harness_container_images}
    assert len(images) == 1 and images.pop().endswith(f"/beam_python3.11_sdk:{beam_version}")

    assert options["setup_file"] == str(project / "setup.py")
    names = sdist_names(built["sdist"])
    assert {f"aeops/pretrained/denoiser/{rel}" for rel in ("saved_model.pb", "variables/variables.index")} <= names
    assert "pipelines/augment.py" in names
