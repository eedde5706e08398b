"""Registry flow on a throw-away SQLite MLflow store: gates decide promotion, rollback, fresh-process load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# mlflow is a pinned dependency: a broken install must fail here, not turn the registry tests into skips
import mlflow
import numpy as np
import pandas as pd
import pytest

from ml import metrics
from ml.gates import DEFAULT_GATES, evaluate_gates
from ml.registry import (
    CHALLENGER,
    CHAMPION,
    DeploymentAudit,
    alias_version,
    champion_info,
    configure,
    model_requirements,
    register_challenger,
    rollback,
    validate_and_promote,
)

NAME = "churn_test"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    old = mlflow.get_tracking_uri()
    configure(uri, "registry-test", str(root / "artifacts"))
    yield {"uri": uri, "root": root, "audit": DeploymentAudit(root / "deployments.sqlite")}
    mlflow.set_tracking_uri(old)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    n = 600
    days = rng.exponential(60, n)
    orders = rng.poisson(3, n).astype(float)
    # support contacts drive churn too: a model that uses them is truly better than one that does not
    contacts = rng.poisson(1.5, n).astype(float)
    churn = (rng.random(n) < 1 / (1 + np.exp(-(days - 60) / 30 + 1.2 * (orders - 3) - 1.5 * (contacts - 1.5)))
             ).astype(int)
    X = pd.DataFrame({"days_since_last_order": days, "orders": orders, "support_contacts": contacts})
    half = n // 2
    return X.iloc[:half], churn[:half], X.iloc[half:], churn[half:]


def _train_and_log(X, y, columns):
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(X[columns], y)
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(model, name="model", input_example=X[columns].head(3),
                                        pip_requirements=model_requirements("scikit-learn"),
                                        signature=infer_signature(X[columns], model.predict_proba(X[columns])[:, 1]))
    return model, info.model_uri, run.info.run_id


def _holdout_metrics(model, X, y, columns):
    out = metrics.classification_metrics(y, model.predict_proba(X[columns])[:, 1])
    base = metrics.classification_metrics(y, X["days_since_last_order"].to_numpy())
    out.update({f"baseline_recency_{k}": v for k, v in base.items()})
    out["baseline_base_rate_brier"] = metrics.brier_score(y, np.full(len(y), y.mean()))
    return out


def test_gates_promote_reject_rollback_and_load_from_fresh_process(store, data):
    X_train, y_train, X_hold, y_hold = data
    audit = store["audit"]
    cols = ["days_since_last_order", "orders"]
    gates = DEFAULT_GATES["churn"]  # the production gates, margin included

    # v1: a decent model, the first one: floors only
    m1, uri1, run1 = _train_and_log(X_train, y_train, cols)
    m1_metrics = _holdout_metrics(m1, X_hold, y_hold, cols)
    v1 = register_challenger(NAME, uri1, run_id=run1, metrics=m1_metrics, audit=audit)
    assert str(alias_version(NAME, CHALLENGER).version) == str(v1.version)
    assert validate_and_promote(NAME, str(v1.version), gates, m1_metrics, None, audit=audit).passed
    assert str(alias_version(NAME, CHAMPION).version) == str(v1.version)

    # v2: crippled (trained on shuffled labels) -> must not be promoted
    y_shuffled = np.random.default_rng(9).permutation(y_train)
    m2, uri2, run2 = _train_and_log(X_train, y_shuffled, cols)
    m2_metrics = _holdout_metrics(m2, X_hold, y_hold, cols)
    v2 = register_challenger(NAME, uri2, run_id=run2, metrics=m2_metrics, audit=audit)
    champion_on_holdout = _holdout_metrics(m1, X_hold, y_hold, cols)
    result = validate_and_promote(NAME, str(v2.version), gates, m2_metrics, champion_on_holdout, audit=audit)
    assert not result.passed
    assert str(alias_version(NAME, CHAMPION).version) == str(v1.version)
    assert str(alias_version(NAME, CHALLENGER).version) == str(v2.version)
    tags = mlflow.MlflowClient().get_model_version(NAME, str(v2.version)).tags
    assert tags["validation_status"] == "failed"
    assert tags["validation_champion_version"] == str(v1.version)
    assert "roc_auc" in tags["validation_summary"]

    # v3: truly better (it also sees the support contacts that drive churn) -> promoted on its measured metrics
    cols3 = [*cols, "support_contacts"]
    m3, uri3, run3 = _train_and_log(X_train, y_train, cols3)
    m3_metrics = _holdout_metrics(m3, X_hold, y_hold, cols3)
    assert m3_metrics["roc_auc"] > champion_on_holdout["roc_auc"] + 0.05  # the fixture's premise, measured
    # the same gates the other way round: the old champion does not beat the better model
    assert not evaluate_gates(gates, champion_on_holdout, m3_metrics).passed
    v3 = register_challenger(NAME, uri3, run_id=run3, metrics=m3_metrics, audit=audit)
    assert validate_and_promote(NAME, str(v3.version), gates, m3_metrics, champion_on_holdout, audit=audit).passed
    assert str(alias_version(NAME, CHAMPION).version) == str(v3.version)
    assert mlflow.MlflowClient().get_model_version(NAME, str(v3.version)).tags["validation_status"] == "passed"

    # rollback restores v1 and is recorded
    assert rollback(NAME, audit=audit) == str(v1.version)
    assert str(alias_version(NAME, CHAMPION).version) == str(v1.version)
    champion_events = audit.history(NAME, CHAMPION)
    assert [(e.action, e.from_version, e.to_version) for e in champion_events] == [
        ("promote", None, str(v1.version)), ("promote", str(v1.version), str(v3.version)), ("rollback", str(v3.version), str(v1.version))]
    assert champion_events[1].run_id == run3
    assert champion_events[1].metrics["roc_auc"] == pytest.approx(m3_metrics["roc_auc"])
    with pytest.raises(RuntimeError, match="no previous champion"):
        rollback(NAME, audit=audit)

    info = champion_info(NAME)
    assert info["version"] == str(v1.version) and info["feature_columns"] == cols

    # a fresh process loads models:/<name>@champion and scores with the signature's columns
    script = (
        "import json, sys, mlflow, pandas as pd\n"
        f"m = mlflow.pyfunc.load_model('models:/{NAME}@champion')\n"
        "cols = m.metadata.get_input_schema().input_names()\n"
        "X = pd.DataFrame({'days_since_last_order': [1.0, 200.0], 'orders': [9.0, 1.0], 'other': [0, 0]})\n"
        "print(json.dumps([float(v) for v in m.predict(X[cols])]))\n"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": store["uri"]}
    script_file = store["root"] / "score.py"
    script_file.write_text(script)
    out = subprocess.run([sys.executable, str(script_file)], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    scores = json.loads(out.stdout.strip().splitlines()[-1])
    # the sklearn pyfunc flavour returns predict(): the class label
    expected = m1.predict(pd.DataFrame({"days_since_last_order": [1.0, 200.0], "orders": [9.0, 1.0]}))
    assert scores == pytest.approx(expected.tolist())
    assert scores[1] > scores[0]
