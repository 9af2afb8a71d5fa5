"""The Airflow DAGs import with the real providers and build the launch the other recipes document.

Airflow lives in .venv-airflow (``make airflow-venv``, see mk/airflow.mk for why not .venv): Airflow's own
DagBag loads dags/ there in a subprocess and prints each operator's arguments as JSON; this side checks them
against the Flex Template metadata, the Cloud Scheduler body and aeops' own flag translation.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest
from google.cloud.dataflow_v1beta3.types import LaunchFlexTemplateRequest, TemplateMetadata

REPO = Path(__file__).resolve().parents[1]
AIRFLOW_PYTHON = Path(os.environ.get("AEOPS_AIRFLOW_PYTHON", REPO / ".venv-airflow" / "bin" / "python"))

pytestmark = pytest.mark.skipif(
    not AIRFLOW_PYTHON.exists(),
    reason=f"{AIRFLOW_PYTHON} absent: `make airflow-venv` creates it (about 3 minutes, 2.2 GB)",
)

DUMP = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.providers.apache.beam.hooks.beam import beam_options_to_args

bag = DagBag(dag_folder=sys.argv[1])
out = {"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id, dag in bag.dags.items():
    tasks = {}
    for task in dag.tasks:
        info = {"class": type(task).__name__}
        if hasattr(task, "body"):
            info.update(body=task.body, project_id=task.project_id, location=task.location,
                        wait_until_finished=task.wait_until_finished)
        else:
            config = task.dataflow_config
            info.update(runner=task.runner, py_file=task.py_file, py_interpreter=task.py_interpreter,
                        args=beam_options_to_args(task.pipeline_options),
                        dataflow=dict(job_name=config.job_name, project_id=config.project_id,
                                      location=config.location, wait=config.wait_until_finished))
        tasks[task.task_id] = info
    out["dags"][dag_id] = {"schedule": str(dag.schedule), "max_active_runs": dag.max_active_runs,
                           "catchup": dag.catchup, "tasks": tasks}
print(json.dumps(out))
"""

PLACEHOLDERS = {"AEOPS_PROJECT": "${PROJECT}", "AEOPS_REGION": "${REGION}", "AEOPS_BUCKET": "${BUCKET}",
                "AEOPS_VERSION": "${VERSION}"}


def load_dags(tmp_path: Path, **env: str) -> dict:
    environment = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
                   **env}
    result = subprocess.run([str(AIRFLOW_PYTHON), "-c", DUMP, str(REPO / "dags")], capture_output=True, text=True,
                            env=environment, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    dump = json.loads(result.stdout.strip().splitlines()[-1])
    assert dump["errors"] == {}
    return dump["dags"]


@pytest.fixture(scope="module")
def dags(tmp_path_factory) -> dict:
    return load_dags(tmp_path_factory.mktemp("dags"), **PLACEHOLDERS)


def test_both_dags_import_and_never_overlap(dags):
    assert set(dags) == {"aeops_regenerate", "aeops_regenerate_beam"}
    for dag in dags.values():
        assert dag["max_active_runs"] == 1 and dag["catchup"] is False and dag["schedule"] == "0 3 * * *"


def test_flex_dag_sends_the_cloud_scheduler_body(dags):
    task = dags["aeops_regenerate"]["tasks"]["augment"]
    assert task["class"] == "DataflowStartFlexTemplateOperator" and task["wait_until_finished"] is True
    assert (task["project_id"], task["location"]) == ("${PROJECT}", "${REGION}")
    assert task["body"] == json.loads((REPO / "scheduling" / "launch-body.json").read_text())
    LaunchFlexTemplateRequest.from_json(json.dumps(task["body"]))  # the API's own schema: no unknown field
    declared = {p.name for p in TemplateMetadata.from_json((REPO / "templates" / "metadata.json").read_text()).parameters}
    parameters = task["body"]["launchParameter"]["parameters"]
    assert set(parameters) - declared == {"sdk_container_image"}  # a Beam option, not a template parameter
    assert (REPO / parameters["config"].replace("/template/", "")).is_file()  # the Dockerfile copies configs/


def test_beam_dag_runs_the_entry_point_with_flags_aeops_accepts(dags):
    task = dags["aeops_regenerate_beam"]["tasks"]["augment"]
    assert task["class"] == "BeamRunPythonPipelineOperator" and task["runner"] == "DataflowRunner"
    assert task["py_file"].endswith("/templates/main.py")
    assert task["dataflow"] == {"job_name": "aeops-augment", "project_id": "${PROJECT}", "location": "${REGION}",
                                "wait": True}
    spec = importlib.util.spec_from_file_location("flex_main", REPO / "templates" / "main.py")
    flex_main = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(flex_main)
    args = flex_main.translate(task["args"])
    assert "--keep=5" in args and "--output=gs://${BUCKET}/augmented" in args
    assert any(a.startswith("--config=") and a.endswith("/configs/dataflow.yaml") for a in args)


def test_gpu_switch_picks_the_gpu_config_and_machine(tmp_path):
    dag = load_dags(tmp_path, AEOPS_GPU="true")["aeops_regenerate"]
    launch = dag["tasks"]["augment"]["body"]["launchParameter"]
    assert launch["parameters"]["config"] == "/template/configs/dataflow-gpu.yaml"
    assert launch["environment"]["machineType"].startswith("n1-")  # T4s attach to N1 only
