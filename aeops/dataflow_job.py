"""A Dataflow job as its user follows it: its id, the console link, the gcloud commands, and ``--wait``.

Nobody waits for a Dataflow job by default: the pipeline's last step publishes the version on the workers. What the
submitter needs is where to look; ``--wait`` adds a poll of the job's state until it ends, then the run's summary
from the manifest the job wrote.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone

from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions
from apache_beam.runners.runner import PipelineState

CONSOLE = "https://console.cloud.google.com/dataflow/jobs/{region}/{job_id}?project={project}"


def where(options: PipelineOptions) -> tuple[str, str]:
    cloud = options.view_as(GoogleCloudOptions)
    return cloud.region or "REGION", cloud.project or "PROJECT"


def follow(job_id: str, options: PipelineOptions) -> str:
    """The lines that tell a person where the job is and how to follow or stop it."""
    region, project = where(options)
    flags = f"--region={region} --project={project}"
    return "\n".join([
        f"  job       {job_id}",
        f"  console   {CONSOLE.format(region=region, job_id=job_id, project=project)}",
        f"  describe  gcloud dataflow jobs describe {job_id} {flags}",
        f"  cancel    gcloud dataflow jobs cancel {job_id} {flags}",
    ])


def dry_run_text(job_name: str, version: str, root: str, options: PipelineOptions) -> str:
    return "\n".join([
        f"augment: dry run: the Dataflow job {job_name} for {version} was built, not submitted; {root} is untouched",
        "  a real run prints its job id, its console link and the commands to follow it:",
        *follow("JOB_ID", options).splitlines()[1:],
        "  with --wait it follows the job's state until the job ends, then prints the run's summary",
    ])


def wait(result, poll_s: float = 15.0, stream=None) -> str:
    """Poll the job's state, printing each change, until it is terminal; returns the final state."""
    stream = stream or sys.stdout
    last = None
    while True:
        state = result.state
        if state != last:
            stamp = datetime.now(timezone.utc).strftime("%H:%M:%S")
            print(f"augment: {stamp} job {result.job_id()} {state}", file=stream, flush=True)
            last = state
        if PipelineState.is_terminal(state):
            return state
        time.sleep(poll_s)
