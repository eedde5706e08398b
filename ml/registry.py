"""MLflow model registry helpers: register challengers, record validation, promote by gates, roll back.

Aliases only (no stages): a new version gets `@challenger`; `@champion` moves only through `promote`
(after the gates passed) or `rollback`. Every alias move is appended to a deployments audit table, a
small SQLite file next to the MLflow store (`<data_dir>/mlflow/deployments.sqlite` by default), so
"who served what, when, and why" survives alias overwrites:

    deployments(event_id, event_time, model_name, alias, action, version, from_version, to_version,
                metrics_json, run_id, note)

This is the one module in `ml/` that does I/O (MLflow calls and the audit file).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from ml.gates import GateConfig, GateResult, evaluate_gates

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deployments (
    event_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    event_time    TEXT NOT NULL,      -- UTC, ISO 8601
    model_name    TEXT NOT NULL,
    alias         TEXT NOT NULL,      -- champion | challenger
    action        TEXT NOT NULL,      -- register | promote | rollback
    version       TEXT NOT NULL,      -- the version the alias points to after the event
    from_version  TEXT,               -- where the alias pointed before (NULL: nowhere)
    to_version    TEXT NOT NULL,
    metrics_json  TEXT NOT NULL,      -- the metrics that justified the move (JSON object)
    run_id        TEXT,               -- MLflow run that produced `to_version`
    note          TEXT
)
"""


@dataclass(frozen=True)
class DeploymentEvent:
    event_id: int
    event_time: str
    model_name: str
    alias: str
    action: str
    version: str
    from_version: str | None
    to_version: str
    metrics: dict
    run_id: str | None
    note: str | None


class DeploymentAudit:
    """Append-only log of alias moves (SQLite; one writer at a time is plenty for weekly training)."""

    def __init__(self, path: Path | str):
        # the caller passes it (c360's Settings.deployments_audit_path): ml/ reads no pipeline configuration
        self.path = Path(path)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=30)) as conn:
            conn.execute(_SCHEMA)
            with conn:  # commits or rolls back
                yield conn

    def append(self, *, model_name: str, alias: str, action: str, from_version: str | None, to_version: str,
               metrics: dict | None = None, run_id: str | None = None, note: str | None = None) -> None:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO deployments (event_time, model_name, alias, action, version, from_version, "
                "to_version, metrics_json, run_id, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (now, model_name, alias, action, str(to_version), None if from_version is None else str(from_version),
                 str(to_version), json.dumps(metrics or {}, sort_keys=True, default=float), run_id, note),
            )

    def history(self, model_name: str, alias: str | None = None) -> list[DeploymentEvent]:
        query = "SELECT * FROM deployments WHERE model_name = ?"
        args: list = [model_name]
        if alias:
            query += " AND alias = ?"
            args.append(alias)
        with self._connect() as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute(query + " ORDER BY event_id", args).fetchall()
        return [DeploymentEvent(r["event_id"], r["event_time"], r["model_name"], r["alias"], r["action"],
                                r["version"], r["from_version"], r["to_version"], json.loads(r["metrics_json"]),
                                r["run_id"], r["note"]) for r in rows]

    def champion_stack(self, model_name: str) -> list[str]:
        """Champion versions in the order they were promoted, with rolled-back ones popped off."""
        stack: list[str] = []
        for event in self.history(model_name, CHAMPION):
            if event.action == "rollback":
                if stack:
                    stack.pop()
                if not stack or stack[-1] != event.to_version:
                    stack.append(event.to_version)
            else:
                stack.append(event.to_version)
        return stack


# --------------------------------------------------------------------------------------------------
# MLflow plumbing
# --------------------------------------------------------------------------------------------------

def configure(tracking_uri: str, experiment: str, artifact_root: str | None) -> str:
    """Point MLflow at the store and make sure the experiment exists with artifacts under our root.

    Without an explicit artifact location a SQLite-backed experiment writes to ./mlruns of whatever
    directory the job runs in. Returns the experiment id.
    """
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient()
    existing = client.get_experiment_by_name(experiment)
    if existing is not None:
        experiment_id = existing.experiment_id
    else:
        location = None
        if artifact_root:
            location = artifact_root if "://" in artifact_root else Path(artifact_root).resolve().as_uri()
            location = location.rstrip("/") + "/" + experiment
        experiment_id = client.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def model_requirements(*packages: str) -> list[str]:
    """Pinned pip requirements for a logged model: mlflow plus `packages` at their installed versions.

    Passing them explicitly skips MLflow's requirement inference, which imports the model in a
    subprocess and costs seconds per model.
    """
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for package in ("mlflow", *packages):
        try:
            out.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            out.append(package)
    return out


_SPARK_TO_MLFLOW = {"double": "double", "float": "float", "int": "integer", "bigint": "long",
                    "string": "string", "boolean": "boolean", "timestamp": "datetime", "date": "datetime"}


def spark_signature(inputs, output: str, output_type: str = "double"):
    """A model signature from a Spark DataFrame's columns; every input is optional (nullable).

    Built from the schema rather than inferred from an example, so a column that happens to have
    no null in the example is not marked required and scoring rows with nulls are accepted.
    """
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    specs = []
    for name, dtype in inputs.dtypes:
        if dtype not in _SPARK_TO_MLFLOW:
            raise TypeError(f"column {name} has Spark type {dtype}: cast model inputs to double or string")
        specs.append(ColSpec(_SPARK_TO_MLFLOW[dtype], name, required=False))
    return ModelSignature(inputs=Schema(specs), outputs=Schema([ColSpec(output_type, output)]))


def alias_version(name: str, alias: str, client: MlflowClient | None = None) -> ModelVersion | None:
    """The version an alias points at, or None (no such model or alias)."""
    client = client or MlflowClient()
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def champion_info(name: str, client: MlflowClient | None = None) -> dict | None:
    """What scoring needs about `models:/<name>@champion`: version, run id, URI and input columns."""
    version = alias_version(name, CHAMPION, client)
    if version is None:
        return None
    uri = f"models:/{name}@{CHAMPION}"
    return {"name": name, "version": str(version.version), "run_id": version.run_id, "uri": uri,
            "feature_columns": signature_columns(uri)}


def load_spark_champion(name: str):
    """(Spark PipelineModel, input columns, version) of `models:/<name>@champion`, or (None, None, None).

    The Spark flavour is what batch scoring uses: `model.transform(df)` adds `prediction`
    (P(churn) for churn, expected value for clv, affinity for the recommender).
    """
    import mlflow.spark

    version = alias_version(name, CHAMPION)
    if version is None:
        return None, None, None
    uri = f"models:/{name}@{CHAMPION}"
    return mlflow.spark.load_model(uri), signature_columns(uri), str(version.version)


def signature_columns(model_uri: str) -> list[str]:
    """The input column names of a logged model's signature (scoring selects exactly these)."""
    info = mlflow.models.get_model_info(model_uri)
    if info.signature is None:
        raise ValueError(f"{model_uri} has no signature: log models with a signature (see docs/models.md)")
    return list(info.signature.inputs.input_names())


def register_challenger(name: str, model_uri: str, *, run_id: str | None, metrics: dict[str, float],
                        audit: DeploymentAudit, tags: dict[str, str] | None = None,
                        client: MlflowClient | None = None) -> ModelVersion:
    """Register `model_uri` as a new version of `name` and point `@challenger` at it."""
    client = client or MlflowClient()
    previous = alias_version(name, CHALLENGER, client)
    version = mlflow.register_model(model_uri, name, tags=tags or {})
    client.set_registered_model_alias(name, CHALLENGER, str(version.version))
    audit.append(model_name=name, alias=CHALLENGER, action="register",
                 from_version=None if previous is None else str(previous.version), to_version=str(version.version),
                 metrics=metrics, run_id=run_id)
    log.info("registered %s version %s as @%s", name, version.version, CHALLENGER)
    return version


def record_validation(name: str, version: str, result: GateResult, challenger_metrics: dict[str, float],
                      champion_metrics: dict[str, float] | None, champion_version: str | None,
                      client: MlflowClient | None = None) -> None:
    """Write the gate outcome onto the model version as tags (visible in the MLflow UI)."""
    client = client or MlflowClient()
    tags = {
        "validation_status": "passed" if result.passed else "failed",
        "validation_summary": result.summary()[:4500],
        "validation_checks": json.dumps(result.as_dict(), default=float)[:4500],
        "validation_time": datetime.now(UTC).isoformat(timespec="seconds"),
        "validation_champion_version": champion_version or "none",
    }
    for key, value in challenger_metrics.items():
        tags[f"metric.{key}"] = f"{value:.6g}" if isinstance(value, float) else str(value)
    for key, value in (champion_metrics or {}).items():
        tags[f"champion_metric.{key}"] = f"{value:.6g}" if isinstance(value, float) else str(value)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def promote(name: str, version: str, *, audit: DeploymentAudit, metrics: dict[str, float] | None = None,
            note: str | None = None, client: MlflowClient | None = None) -> str | None:
    """Move `@champion` to `version` and record the move. Returns the previous champion version."""
    client = client or MlflowClient()
    previous = alias_version(name, CHAMPION, client)
    from_version = None if previous is None else str(previous.version)
    if from_version == str(version):
        log.info("%s version %s is already @%s", name, version, CHAMPION)
        return from_version
    client.set_registered_model_alias(name, CHAMPION, str(version))
    run_id = client.get_model_version(name, str(version)).run_id
    audit.append(model_name=name, alias=CHAMPION, action="promote", from_version=from_version,
                 to_version=str(version), metrics=metrics, run_id=run_id, note=note)
    log.info("promoted %s version %s to @%s (was %s)", name, version, CHAMPION, from_version or "none")
    return from_version


def validate_and_promote(name: str, version: str, config: GateConfig, challenger_metrics: dict[str, float],
                         champion_metrics: dict[str, float] | None, *, audit: DeploymentAudit,
                         client: MlflowClient | None = None) -> GateResult:
    """Evaluate the gates, tag the version with the result and promote it if (and only if) it passed.

    `champion_metrics` must be the current champion's metrics on the same holdout as the challenger's.
    """
    client = client or MlflowClient()
    current = alias_version(name, CHAMPION, client)
    result = evaluate_gates(config, challenger_metrics, champion_metrics if current is not None else None)
    record_validation(name, version, result, challenger_metrics, champion_metrics,
                      None if current is None else str(current.version), client)
    if result.passed:
        promote(name, version, metrics=challenger_metrics, note=result.summary()[:1000], audit=audit, client=client)
    else:
        log.warning("%s version %s stays @%s: gates %s", name, version, CHALLENGER, result.summary())
    return result


def rollback(model_name: str, *, audit: DeploymentAudit, note: str | None = None,
             client: MlflowClient | None = None) -> str:
    """Point `@champion` back at the champion before the current one (from the audit table).

    Rolling back twice goes two promotions back. Returns the restored version.
    """
    client = client or MlflowClient()
    current = alias_version(model_name, CHAMPION, client)
    if current is None:
        raise RuntimeError(f"{model_name} has no @{CHAMPION}: nothing to roll back")
    current_version = str(current.version)
    stack = audit.champion_stack(model_name)
    if stack and stack[-1] != current_version:
        # the alias was moved outside ml.registry: the last audited champion is the one to go back to
        log.warning("@%s of %s is version %s but the audit table's last champion is %s: restoring %s",
                    CHAMPION, model_name, current_version, stack[-1], stack[-1])
        stack.append(current_version)
    if len(stack) < 2:
        raise RuntimeError(
            f"{model_name}: no previous champion in the audit table {audit.path}; set the alias by hand: "
            f"MlflowClient().set_registered_model_alias('{model_name}', 'champion', <version>)"
        )
    target = stack[-2]
    client.set_registered_model_alias(model_name, CHAMPION, target)
    restored = client.get_model_version(model_name, target)
    client.set_model_version_tag(model_name, current_version, "rolled_back_at",
                                 datetime.now(UTC).isoformat(timespec="seconds"))
    audit.append(model_name=model_name, alias=CHAMPION, action="rollback", from_version=current_version,
                 to_version=target, metrics={}, run_id=restored.run_id, note=note or "rollback")
    log.info("rolled back %s @%s from version %s to %s", model_name, CHAMPION, current_version, target)
    return target
