"""Airflow Assets of the pipeline, each URI defined once. DAG files import these; nothing heavy here."""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import Asset, AssetAll, PartitionedAssetTimetable

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
# The @champion models in the MLflow registry, moved by the training DAG (and by the first night's bootstrap).
MODELS_ASSET = Asset(name="models.champions", uri="c360://mlflow/models/champions", group="c360")
# The night's scores and recommendations (Parquet by date), written by the scoring job.
SCORES_ASSET = Asset(name="scores", uri="c360://scores/customer_scores", group="c360")
# Segment memberships and changes in the marts, rebuilt once the scores are loaded.
SEGMENTS_ASSET = Asset(name="marts.segments", uri="c360://warehouse/marts/segment_members", group="c360")
# The consent-aware segment exports (manifest.json per date under EXPORT_URI).
EXPORTS_ASSET = Asset(name="exports.segments", uri="c360://exports/segments", group="c360")


# The DAGs' start_date. Airflow creates no task instance for a logical date before it (the run is marked
# successful having done nothing), so it must precede any history a shop may bring: 1970-01-01, the
# earliest date the landing contract accepts. Every DAG has catchup=False, so the scheduler never backfills
# from it: an unpaused DAG runs its latest interval only; older nights run on demand (`c360 nightly --date`).
DAG_START_DATE = datetime(1970, 1, 1, tzinfo=UTC)


def per_date_schedule(*assets: Asset) -> PartitionedAssetTimetable:
    """Schedule a downstream DAG on `assets`, one run per data date, in the order the dates landed.

    A plain Asset schedule (`schedule=[...]`) makes ONE run of everything queued since the previous run: when
    several ingest runs (a backfill, a late night) finish while a transform run is busy (max_active_runs=1),
    their dates collapse into one run and every date but one gets no snapshot, scores or exports. Upstream
    tasks tag each event with its run date as partition key (c360.pipeline.tasks.publish_run_date); this timetable
    makes one run per key once every asset has an event for it, and the run knows its date (partition_key).
    """
    return PartitionedAssetTimetable(assets=AssetAll(*assets))
