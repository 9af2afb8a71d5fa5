"""Shared fixtures. Servers (GCS on loopback) live in tests/gcs_servers.py; the few-step model in
tests/model_fixtures.py."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

pytest_plugins = ["tests.gcs_servers", "tests.model_fixtures"]
