"""Configuration lives in c360/config.py Settings: every setting has a default, an environment variable, a check
that names the variable, and reaches children (Airflow, dbt, Spark) through as_env(); dbt's env_var() defaults
agree with Settings; nothing else reads the pipeline's variables; ml/ imports no c360."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from c360.config import ENV_VARS, Settings, SettingsError, dag_parse_settings, get_settings

ROOT = Path(__file__).resolve().parent.parent
# dbt vars set per run by c360.pipeline.transform, not settings
PER_RUN_DBT_VARIABLES = {"C360_RUN_DATE", "C360_SEGMENTS_JSON", "C360_TEST_WINDOW_START"}


@pytest.fixture()
def clean_env(monkeypatch):
    """No pipeline variable set: every setting at its default."""
    for var in ENV_VARS.values():
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def _dbt_env_var_defaults() -> dict[str, str]:
    """VARIABLE -> default of each env_var('VARIABLE', default) in dbt_project.yml's vars (nested defaults resolved)."""
    project = yaml.safe_load((ROOT / "dbt_project" / "dbt_project.yml").read_text())

    def resolve(expr: str) -> tuple[str, str]:
        m = re.fullmatch(r"\s*env_var\(\s*'(\w+)'\s*,\s*(.+)\)\s*", expr)
        assert m, f"dbt_project.yml: unexpected env_var expression {expr!r}"
        name, default = m.groups()
        quoted = re.fullmatch(r"'([^']*)'", default.strip())
        return name, quoted.group(1) if quoted else resolve(default)[1]

    out = {}
    for value in project["vars"].values():
        m = re.fullmatch(r"\{\{(.*)\}\}", str(value).strip())
        if m and "env_var" in m.group(1):
            name, default = resolve(m.group(1))
            out[name] = default
    return out


def test_dbt_env_var_defaults_equal_the_settings_defaults(clean_env):
    dbt = _dbt_env_var_defaults()
    shared = {name: default for name, default in dbt.items() if name not in PER_RUN_DBT_VARIABLES}
    # a dbt var read from the environment is a setting: Settings must know it, or children never receive it
    assert set(shared) <= set(ENV_VARS.values()), f"dbt reads variables Settings lacks: {set(shared) - set(ENV_VARS.values())}"
    assert {"C360_LOOKBACK_DAYS", "C360_SESSION_TIMEOUT_MINUTES", "C360_MAX_CUSTOMERS_PER_DEVICE",
            "C360_CHURN_HORIZON_DAYS", "C360_VALUE_HORIZON_DAYS", "C360_BASE_CURRENCY"} <= set(shared)
    defaults = get_settings().as_env()
    assert {name: defaults[name] for name in shared} == shared


def test_defaults_are_unchanged(clean_env):
    s = get_settings()
    assert (s.psi_warn, s.psi_hold) == (0.1, 0.25)
    assert s.psi_features[:2] == ("days_since_last_order", "orders_count") and len(s.psi_features) == 10
    assert s.psi_scores == ("churn_probability", "predicted_value_eur", "p_alive")
    assert s.psi_reference_date is None
    assert s.train_job_args() == ["--train-snapshots", "3"]
    assert s.bootstrap_train_job_args() == ["--rec-grid", "none", "--train-snapshots", "3"]
    assert s.first_champion == "gated" and s.train_schedule == "0 3 * * 0"
    assert (s.lookback_days, s.session_timeout_minutes, s.max_customers_per_device) == (3, 30, 3)
    assert (s.landing_wait_seconds, s.landing_poke_seconds) == (1800, 60)
    assert s.deployments_audit_path == s.data_dir / "mlflow" / "deployments.sqlite"


def test_every_setting_has_a_variable_and_children_resolve_the_same_settings(clean_env, tmp_path):
    assert set(ENV_VARS) == {f.name for f in fields(Settings)} - {"extra"}
    assert len(set(ENV_VARS.values())) == len(ENV_VARS)
    for var, value in {"C360_DATA_DIR": str(tmp_path), "C360_PSI_WARN": "0.2", "C360_PSI_HOLD": "0.4",
                       "C360_PSI_SCORES": "p_alive", "C360_PSI_REFERENCE_DATE": "2026-01-31",
                       "C360_TRAIN_ARGS": "--rec-grid small", "C360_FIRST_CHAMPION": "ACCEPT",
                       "C360_TRAIN_SCHEDULE": "30 2 * * 1", "C360_LOOKBACK_DAYS": "5",
                       "C360_SESSION_TIMEOUT_MINUTES": "45", "C360_S3_ENDPOINT_URL": "http://minio:9000",
                       "DBT_TARGET_PATH": str(tmp_path / "dbt_target")}.items():
        clean_env.setenv(var, value)
    parent = get_settings()
    assert (parent.psi_warn, parent.psi_hold, parent.psi_scores) == (0.2, 0.4, ("p_alive",))
    assert parent.first_champion == "accept" and parent.lookback_days == 5
    env = parent.as_env()
    assert set(env) == set(ENV_VARS.values())
    for var in ENV_VARS.values():  # a child process started with env=as_env() only
        clean_env.delenv(var, raising=False)
    for var, value in env.items():
        clean_env.setenv(var, value)
    assert get_settings() == parent


def test_an_empty_train_args_variable_still_means_no_extra_arguments(clean_env):
    clean_env.setenv("C360_TRAIN_ARGS", "")
    assert get_settings().train_job_args() == []
    assert get_settings().bootstrap_train_job_args() == ["--rec-grid", "none", "--train-snapshots", "3"]


@pytest.mark.parametrize(("env", "match"), [
    ({"C360_PSI_HOLD": "lots"}, "C360_PSI_HOLD='lots' must be a number"),
    ({"C360_PSI_WARN": "0.5", "C360_PSI_HOLD": "0.2"}, "C360_PSI_WARN=0.5 and C360_PSI_HOLD=0.2"),
    ({"C360_PSI_REFERENCE_DATE": "2026-13-01"}, "C360_PSI_REFERENCE_DATE='2026-13-01' must be a date"),
    ({"C360_FIRST_CHAMPION": "yes"}, "C360_FIRST_CHAMPION='yes' must be gated or accept"),
    ({"C360_TRAIN_SCHEDULE": "weekly"}, "C360_TRAIN_SCHEDULE='weekly' must be a cron expression"),
    ({"C360_TRAIN_ARGS": '--rec-grid "small'}, "C360_TRAIN_ARGS=.* is not valid shell words"),
    ({"C360_LOOKBACK_DAYS": "-1"}, "C360_LOOKBACK_DAYS=-1 must be at least 0"),
    ({"C360_SESSION_TIMEOUT_MINUTES": "0"}, "C360_SESSION_TIMEOUT_MINUTES=0 must be at least 1"),
    ({"C360_MAX_CUSTOMERS_PER_DEVICE": "three"}, "C360_MAX_CUSTOMERS_PER_DEVICE='three' must be a whole number"),
    ({"C360_NBA_RETAIN_MIN_CHURN": "1.5"}, "C360_NBA_RETAIN_MIN_CHURN=1.5 must be between 0 and 1"),
    ({"C360_NBA_UPLIFT_CROSS_SELL": "-0.1"}, "C360_NBA_UPLIFT_CROSS_SELL=-0.1 must be between 0 and 1"),
    ({"C360_NBA_RETAIN_MIN_VALUE_EUR": "fifty"}, "C360_NBA_RETAIN_MIN_VALUE_EUR='fifty' must be a number"),
    ({"C360_NBA_CONTACT_CAP_DAYS": "-7"}, "C360_NBA_CONTACT_CAP_DAYS=-7 must be at least 0"),
    # reaches a SET statement and dbt's profile: only a size or a share is let through
    ({"C360_WAREHOUSE_MEMORY_LIMIT": "1GB'; ATTACH '/etc/passwd' AS x; --"}, "C360_WAREHOUSE_MEMORY_LIMIT=.*expected a size"),
    ({"C360_WAREHOUSE_MEMORY_LIMIT": "0%"}, "from 1% to 100%"),
    ({"C360_WAREHOUSE_MEMORY_LIMIT": "150%"}, "from 1% to 100%"),
    ({"C360_WAREHOUSE_MEMORY_LIMIT": "lots"}, "C360_WAREHOUSE_MEMORY_LIMIT='lots'"),
    # the warehouse and dbt's target must agree, or dbt builds one warehouse and every reader opens the other
    ({"C360_WAREHOUSE": "snowflake"}, "C360_WAREHOUSE='snowflake': expected one of duckdb, spark"),
    ({"C360_WAREHOUSE": "spark", "DBT_TARGET": "ci"}, "C360_WAREHOUSE=spark but DBT_TARGET='ci' is a DuckDB target"),
    ({"DBT_TARGET": "spark"}, "DBT_TARGET=spark builds the Spark warehouse: set C360_WAREHOUSE=spark"),
    # reaches a JDBC URL, where ';' would add connection attributes
    ({"C360_SPARK_METASTORE_DIR": "/tmp/ms;shutdown=true"}, "C360_SPARK_METASTORE_DIR=.*without ';'"),
])
def test_a_bad_variable_fails_naming_it(clean_env, env, match):
    for var, value in env.items():
        clean_env.setenv(var, value)
    with pytest.raises(SettingsError, match=match):
        get_settings()


def test_the_warehouse_memory_limit_reaches_dbt_and_every_connection(clean_env, tmp_path):
    """dbt's profile reads the same variable with the same default as Settings, and warehouse.connect sets it."""
    from c360.pipeline import warehouse

    profiles = yaml.safe_load((ROOT / "dbt_project" / "profiles.yml").read_text())
    duckdb_outputs = {name: o for name, o in profiles["c360"]["outputs"].items() if o["type"] == "duckdb"}
    assert set(duckdb_outputs) == {"local", "ci"}
    for name, output in duckdb_outputs.items():
        limit = output["settings"]["memory_limit"]
        default = get_settings().warehouse_memory_limit
        assert limit == "{{ env_var('C360_WAREHOUSE_MEMORY_LIMIT', '" + default + "') }}", name
    clean_env.setenv("C360_WAREHOUSE_MEMORY_LIMIT", "777MB")
    clean_env.setenv("WAREHOUSE_PATH", str(tmp_path / "w.duckdb"))
    con = warehouse.connect()
    try:
        assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == "741.0 MiB"  # 777e6 bytes
    finally:
        con.close()


def test_dag_parse_settings_read_only_their_variables(clean_env):
    clean_env.setenv("C360_PSI_HOLD", "lots")  # unrelated and bad: DAG parsing must not depend on it
    clean_env.setenv("C360_TRAIN_SCHEDULE", "15 4 * * 2")
    clean_env.setenv("C360_LANDING_POKE_SECONDS", "7")
    parsed = dag_parse_settings()
    assert (parsed.train_schedule, parsed.landing_poke_seconds, parsed.landing_wait_seconds) == ("15 4 * * 2", 7, 1800)
    clean_env.setenv("C360_TRAIN_SCHEDULE", "weekly")
    with pytest.raises(SettingsError, match="C360_TRAIN_SCHEDULE"):
        dag_parse_settings()


def test_dag_files_take_the_schedule_and_sensor_from_settings_and_ignore_other_variables(tmp_path):
    """Airflow parses the DAG folder with a bad unrelated variable: no import error, the overrides applied."""
    code = f"""
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={str(ROOT / "dags")!r})
sensor = bag.dags["c360_ingest"].get_task("wait_for_transactions")
print(json.dumps({{"errors": {{k: str(v)[-300:] for k, v in bag.import_errors.items()}},
                  "train": repr(bag.dags["c360_train"].timetable) + str(bag.dags["c360_train"].timetable.summary),
                  "poke": sensor.poke_interval, "timeout": sensor.timeout}}))
"""
    env = {k: v for k, v in __import__("os").environ.items() if k not in ENV_VARS.values()}
    env.update({"PYTHONPATH": str(ROOT), "AIRFLOW_HOME": str(tmp_path / "airflow"), "C360_PSI_HOLD": "lots",
                "C360_TRACKING_SOURCES": "nonsense", "C360_TRAIN_SCHEDULE": "15 4 * * 2",
                "C360_LANDING_POKE_SECONDS": "7", "C360_LANDING_WAIT_SECONDS": "70"})
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["errors"] == {}
    assert "15 4 * * 2" in out["train"]
    assert out["poke"] == 7 and out["timeout"] == 77


def test_c360_config_prints_every_setting_with_its_variable(clean_env, capsys):
    from c360 import cli

    clean_env.setenv("C360_PSI_HOLD", "0.3")
    assert cli.main(["config"]) == 0
    lines = capsys.readouterr().out.splitlines()
    shown = {line.split()[0]: line.split()[1:] for line in lines}
    assert set(shown) == set(ENV_VARS)
    assert shown["psi_hold"] == ["C360_PSI_HOLD", "0.3"]
    assert shown["train_args"] == ["C360_TRAIN_ARGS", "--train-snapshots", "3"]

    assert cli.main(["config", "--json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert as_json["first_champion"] == {"value": "gated", "env": "C360_FIRST_CHAMPION"}

    assert cli.main(["config", "--env"]) == 0
    assert "C360_PSI_HOLD=0.3" in capsys.readouterr().out.splitlines()

    clean_env.setenv("C360_FIRST_CHAMPION", "yes")
    assert cli.main(["config"]) == 2
    assert "C360_FIRST_CHAMPION='yes' must be gated or accept" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- who reads what

# (file, first argument) of the environment reads allowed outside c360/config.py, each with its reason
ALLOWED_ENV_READS = {
    ("ml/value.py", "'PYSPARK_PYTHON'"),  # Spark's own worker interpreter, not a pipeline setting
}


def _env_reads(path: Path) -> list[tuple[str, str]]:
    """(file, first argument) of each os.environ.get / os.getenv / os.environ[...] read in the file."""
    rel = str(path.relative_to(ROOT))
    reads = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and node.args:
            name = ast.unparse(node.func)
            if name in ("os.environ.get", "os.getenv", "environ.get", "getenv"):
                reads.append((rel, ast.unparse(node.args[0])))
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) \
                and ast.unparse(node.value) in ("os.environ", "environ"):
            reads.append((rel, ast.unparse(node.slice)))
    return reads


def test_only_config_reads_the_environment():
    files = [p for d in ("c360", "dags", "spark_jobs", "ml") for p in (ROOT / d).rglob("*.py")
             if p != ROOT / "c360" / "config.py" and "bench" not in p.relative_to(ROOT).parts]  # bench: dev tool
    reads = {r for p in files for r in _env_reads(p)}
    assert reads - ALLOWED_ENV_READS == set(), "read these settings through c360.config.get_settings()"


def test_the_configuration_page_lists_every_variable():
    page = (ROOT / "docs" / "configuration.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| `(\w+)` \|", page, flags=re.M))
    assert rows == {var: field for field, var in ENV_VARS.items()}
