"""Airflow DAGs that regenerate an aeops dataset on a schedule (Airflow 3 with the Google and Apache Beam providers,
e.g. Cloud Composer 3). Copy this file into the environment's dags/ folder and set the AEOPS_* variables below
in the environment (Composer: "Environment variables").

* ``aeops_regenerate`` launches the Flex Template built from the repository's Dockerfile (``flex`` target) with
  ``DataflowStartFlexTemplateOperator``: nothing of aeops is installed on the Airflow workers.
* ``aeops_regenerate_beam`` runs ``templates/main.py`` of an aeops checkout with ``BeamRunPythonPipelineOperator``
  and ``DataflowConfiguration``, for environments where aeops is installed next to Airflow (AEOPS_PYTHON).

Both are safe to run as often as wanted: an unchanged fingerprint ends the run as "up to date", and a version
is published (``LATEST`` moved) only once complete. ``max_active_runs=1`` keeps two runs of the same version
from writing the same folder at once, which on gs:// nothing else can prevent.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator
from airflow.providers.google.cloud.operators.dataflow import DataflowConfiguration, DataflowStartFlexTemplateOperator
from airflow.sdk import DAG

PROJECT = os.environ.get("AEOPS_PROJECT", "my-project")
REGION = os.environ.get("AEOPS_REGION", "us-central1")
BUCKET = os.environ.get("AEOPS_BUCKET", "my-bucket")
INPUT = os.environ.get("AEOPS_INPUT", f"gs://{BUCKET}/raw/*.tfrecord")
OUTPUT = os.environ.get("AEOPS_OUTPUT", f"gs://{BUCKET}/augmented")
IMAGE_REPO = os.environ.get("AEOPS_IMAGE_REPO", f"{REGION}-docker.pkg.dev/{PROJECT}/aeops")
VERSION = os.environ.get("AEOPS_VERSION", "0.1.0")
TEMPLATE = os.environ.get("AEOPS_TEMPLATE", f"gs://{BUCKET}/templates/aeops-augment-{VERSION}.json")
GPU = os.environ.get("AEOPS_GPU", "false").lower() == "true"
KEEP = int(os.environ.get("AEOPS_KEEP", "5"))
SCHEDULE = os.environ.get("AEOPS_SCHEDULE", "0 3 * * *")
AEOPS_HOME = os.environ.get("AEOPS_HOME", "/home/airflow/gcs/data/aeops")  # a checkout, for the Beam DAG
AEOPS_PYTHON = os.environ.get("AEOPS_PYTHON", "python3")  # an interpreter with aeops installed

CONFIG = "dataflow-gpu.yaml" if GPU else "dataflow.yaml"
DAG_ARGS = dict(
    schedule=SCHEDULE,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=12),  # a run still going after this is stuck, not slow
    default_args={"retries": 1, "retry_delay": timedelta(minutes=10)},
    tags=["aeops", "dataflow"],
)


def flex_launch_body() -> dict:
    """The ``projects.locations.flexTemplates.launch`` request body (scheduling/launch-body.json is the same)."""
    return {
        "launchParameter": {
            "jobName": "aeops-augment",
            "containerSpecGcsPath": TEMPLATE,
            "parameters": {
                "input": INPUT,
                "output": OUTPUT,
                "config": f"/template/configs/{CONFIG}",
                "keep": str(KEEP),
                "sdk_container_image": f"{IMAGE_REPO}/flex:{VERSION}",
            },
            "environment": {
                "tempLocation": f"gs://{BUCKET}/tmp",
                "stagingLocation": f"gs://{BUCKET}/staging",
                "sdkContainerImage": f"{IMAGE_REPO}/flex:{VERSION}",
                "machineType": "n1-standard-8" if GPU else "n2-standard-8",
                "maxWorkers": 4 if GPU else 20,
            },
        }
    }


with DAG("aeops_regenerate", description="aeops augment as a Dataflow Flex Template", **DAG_ARGS):
    DataflowStartFlexTemplateOperator(
        task_id="augment",
        project_id=PROJECT,
        location=REGION,
        body=flex_launch_body(),
        wait_until_finished=True,
        append_job_name=True,
    )

with DAG("aeops_regenerate_beam", description="aeops augment from a checkout, on Dataflow", **DAG_ARGS):
    BeamRunPythonPipelineOperator(
        task_id="augment",
        runner="DataflowRunner",
        py_file=f"{AEOPS_HOME}/templates/main.py",
        py_interpreter=AEOPS_PYTHON,
        pipeline_options={
            "config": f"{AEOPS_HOME}/configs/{CONFIG}",
            "input": INPUT,
            "output": OUTPUT,
            "keep": KEEP,
            "temp_location": f"gs://{BUCKET}/tmp",
            "sdk_container_image": f"{IMAGE_REPO}/sdk:{VERSION}",
            "setup_file": f"{AEOPS_HOME}/setup.py",
        },
        dataflow_config=DataflowConfiguration(
            job_name="aeops-augment",
            project_id=PROJECT,
            location=REGION,
            wait_until_finished=True,
        ),
    )
