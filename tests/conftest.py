"""Shared fixtures: every test runs against its own landing zone, warehouse and Airflow home under tmp_path."""

from __future__ import annotations

import os
import socket
import tempfile

import pytest

# Airflow reads AIRFLOW_HOME when first imported: keep the test session's Airflow out of ~/airflow and the repo.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="c360-test-airflow-")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"

pytest_plugins = ["tests.spark_fixtures"]


@pytest.fixture
def c360_env(tmp_path, monkeypatch):
    """Point every setting at tmp_path; returns the resolved Settings."""
    from c360.config import get_settings

    data = tmp_path / "data"
    monkeypatch.setenv("C360_DATA_DIR", str(data))
    for var in ("LANDING_URI", "WAREHOUSE_PATH", "EXPORT_URI", "C360_FEATURE_STORE_DIR", "C360_SCORES_DIR",
                "C360_REPORTS_DIR", "MLFLOW_TRACKING_URI", "C360_MLFLOW_ARTIFACT_ROOT", "C360_S3_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.setenv("C360_LANDING_WAIT_SECONDS", "2")
    monkeypatch.setenv("C360_LANDING_POKE_SECONDS", "1")
    return get_settings()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_s3_server():
    """A real moto S3 server over HTTP on 127.0.0.1 (not an in-process mock); yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(moto_s3_server, monkeypatch):
    """A fresh bucket on the moto server, with credentials in the environment; yields its name."""
    import uuid

    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("C360_S3_ENDPOINT_URL", moto_s3_server)
    name = f"c360-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=moto_s3_server).create_bucket(Bucket=name)
    return name


def pytest_collection_modifyitems(config, items):
    """`production` tests bring up the PostgreSQL/Airflow/MLflow stack of infra/stack.sh (minutes each module):
    they run only when the -m expression names them (`make test-production`), so `make test` and a
    `-m "not cluster"` run leave them out."""
    if "production" in (config.option.markexpr or ""):
        return
    kept = [item for item in items if item.get_closest_marker("production") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item.get_closest_marker("production")])
        items[:] = kept
