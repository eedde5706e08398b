"""Airflow Assets of the pipeline, each URI defined once. DAG files import these; nothing heavy here."""

from __future__ import annotations

from airflow.sdk import Asset

from c360.config import WAREHOUSE_POOL  # noqa: F401 - re-exported for DAG files
from c360.ingest.contract import ENTITIES

# One Asset per raw table, updated by the ingestion DAG; downstream DAGs schedule on them.
RAW_ASSETS: dict[str, Asset] = {
    name: Asset(name=f"raw.{e.table}", uri=f"c360://warehouse/raw/{e.table}", group="c360-raw")
    for name, e in ENTITIES.items()
}

# The feature store's nightly snapshot (warehouse tables + Parquet copies), updated by the transform DAG.
FEATURE_STORE_ASSET = Asset(
    name="feature_store.customer_features", uri="c360://warehouse/feature_store/customer_features", group="c360"
)
MARTS_ASSET = Asset(name="marts", uri="c360://warehouse/marts", group="c360")
