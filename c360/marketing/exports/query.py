"""Read one segment's export rows from the dbt model pii.segment_export_rows (docs/exports.md).

Every decision about a row is made in dbt (dbt_project/models/pii/segment_export_rows.sql): the consent decision
(`consent_ok`: the date's segment rows, the date's feature snapshot and the current contacts row agree; unknown
= no), the email and names blanked unless consent_ok, the rounded scores, rec_1..rec_3 and the entered/exited
rows. This module only filters that relation by date, segment and the segment's consent requirement, and chooses
the file columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import duckdb

from c360.marketing.segments import Segment
from c360.pipeline.warehouse import relation_exists

EXPORT_ROWS = "pii.segment_export_rows"
# What builds EXPORT_ROWS, for error messages.
BUILD_HINT = "build the dbt models first (dbt build --select +segment_export_rows, or the nightly)"

MODEL_VERSION_COLUMNS = {"churn": "churn_model_version", "clv": "clv_model_version",
                         "recommender": "recommender_model_version"}
TAIL_COLUMNS = ("run_id", "as_of_date", "churn_model_version", "clv_model_version", "recommender_model_version",
                "feature_snapshot_date")
DELTA_COLUMNS = ("customer_id", "email", "segment", "change", "as_of_date", "run_id")
# The model's columns behind DELTA_COLUMNS: a change file's run_id is the date's run (date_run_id).
_DELTA_SELECT = "customer_id, email, segment, change, as_of_date, date_run_id"
REC_COLUMNS = ("rec_1", "rec_2", "rec_3", "recommender_model_version")

# The built-in next-best-action export (docs/exports.md#next-best-action): one action per consenting customer,
# decided by the dbt mart marts.customer_next_best_action and read, like the segments, from a pii view.
NBA_EXPORT = "next_best_action"
NBA_ROWS = "pii.next_best_action_export_rows"
# the mart behind NBA_ROWS: every scored customer of the night (actions and none), for the night's metadata
NBA_MART = "marts.customer_next_best_action"
NBA_COLUMNS = ("customer_id", "email", "action", "product_id", "expected_value_eur", "reason", "as_of_date",
               "run_id", "churn_model_version", "clv_model_version", "recommender_model_version",
               "feature_snapshot_date")
NBA_SEGMENT = Segment(
    name=NBA_EXPORT,
    description="Built-in: tonight's next-best action per consenting customer (marts.customer_next_best_action, "
                "docs/next_best_action.md)",
    where="action <> 'none' (rules: C360_NBA_* settings)",
    required_consent="marketing",
    destination="crm",
    columns=(),
)


class ExportInputError(RuntimeError):
    """A relation the export needs is missing; the message says which and what builds it."""


@dataclass
class SegmentData:
    """Everything one segment's files and manifest entry are made of."""

    segment: Segment
    columns: list[str]
    rows: list[tuple]
    members: int  # segment members at the date, before the consent filter
    entered: list[tuple]
    exited: list[tuple]
    run_ids: list[str]
    model_versions: dict[str, Any]
    feature_snapshot_dates: list[str]
    warnings: list[str] = field(default_factory=list)
    delta_files: bool = True  # entered / exited files (segments); the next-best-action export has none

    @property
    def excluded_without_consent(self) -> int:
        return self.members - len(self.rows)


def export_columns(segment: Segment, recommendations: bool = True) -> list[str]:
    """File columns: customer_id, email, segment, the segment's chosen columns, then run and model metadata.
    Without recommendations for the date (a shop without product data has no recommender), rec_1..rec_3 and
    recommender_model_version are left out rather than exported as always-empty columns."""
    columns = ["customer_id", "email", "segment", *segment.columns, *TAIL_COLUMNS]
    return columns if recommendations else [c for c in columns if c not in REC_COLUMNS]


def consent_rule_text(segment: Segment) -> str:
    if segment.consent_column:
        return ("only customers with marketing_consent = true as of as_of_date and still now (segment_members, "
                "feature store and contacts agree; unknown = no); email and names from pii")
    return ("all segment members (service use); email and names blank unless marketing_consent = true as of "
            "as_of_date and still now")


def _query(con, sql: str, params: list) -> list[tuple]:
    # The model is a view: a dropped or renamed input (e.g. pii.pii_customer_contacts) only shows when it is read.
    try:
        return con.execute(sql, params).fetchall()
    except duckdb.Error as exc:
        raise ExportInputError(f"{EXPORT_ROWS} cannot be read ({str(exc).splitlines()[0]}): {BUILD_HINT}.") from exc


def _distinct(con, column: str, day: date, segment: str | None) -> list[str]:
    where = "as_of_date = $1 AND is_member" + (" AND segment = $2" if segment else "")
    params = [day, segment] if segment else [day]
    return [str(v) for (v,) in _query(
        con, f"SELECT DISTINCT {column} FROM {EXPORT_ROWS} WHERE {where} AND {column} IS NOT NULL ORDER BY 1", params)]


def _one_or_many(values: list[str]) -> str | list[str] | None:
    return None if not values else values[0] if len(values) == 1 else values


def _recommendations(con, day: date) -> tuple[bool, list[str]]:
    """Whether the date's files carry rec_1..rec_3 (a recommender scored the night), and warnings about them."""
    versions, rec_rows = _query(
        con, f"SELECT count(recommender_model_version) FILTER (WHERE is_member), "
             f"coalesce(bool_or(date_has_recommendations), false) FROM {EXPORT_ROWS} WHERE as_of_date = $1",
        [day])[0]
    warnings = []
    if versions and not rec_rows:
        warnings.append(f"marts.customer_recommendations has no rows for {day} although the scores name a "
                        "recommender version: rec_1..rec_3 are empty")
    return bool(versions or rec_rows), warnings


def load_segment_data(con, segment: Segment, day: date) -> SegmentData:
    """The consent-filtered rows of one segment at `day`, its entered/exited rows and its metadata."""
    if not relation_exists(con, EXPORT_ROWS):
        raise ExportInputError(f"{EXPORT_ROWS} does not exist: the exports read their rows from it only; "
                               f"{BUILD_HINT}.")
    recommendations, warnings = _recommendations(con, day)
    columns = export_columns(segment, recommendations)
    if not recommendations and any(c in segment.columns for c in REC_COLUMNS):
        warnings.append(f"no recommendations for {day} (no recommender champion scored the night: a shop without "
                        "product interactions has none): rec_1..rec_3 and recommender_model_version left out")
    consent_filter = "AND consent_ok" if segment.consent_column else ""
    rows = _query(con, f"""SELECT {', '.join(columns)} FROM {EXPORT_ROWS}
                           WHERE as_of_date = $1 AND segment = $2 AND is_member {consent_filter}
                           ORDER BY customer_id""", [day, segment.name])
    members = _query(con, f"SELECT count(*) FROM {EXPORT_ROWS} WHERE as_of_date = $1 AND segment = $2 AND is_member",
                     [day, segment.name])[0][0]

    def deltas(change: str) -> list[tuple]:
        return _query(con, f"""SELECT {_DELTA_SELECT} FROM {EXPORT_ROWS}
                               WHERE as_of_date = $1 AND segment = $2 AND change = $3 {consent_filter}
                               ORDER BY customer_id""", [day, segment.name, change])

    # Empty segment: the date's versions still say which models produced (no) members.
    scope = segment.name if members else None
    return SegmentData(
        segment=segment, columns=columns, rows=rows, members=members,
        entered=deltas("entered"), exited=deltas("exited"),
        run_ids=_distinct(con, "run_id", day, scope),
        model_versions={m: _one_or_many(_distinct(con, col, day, scope)) for m, col in MODEL_VERSION_COLUMNS.items()},
        feature_snapshot_dates=_distinct(con, "feature_snapshot_date", day, scope),
        warnings=warnings,
    )


def load_next_best_action_data(con, day: date) -> SegmentData | None:
    """The date's next-best actions for consenting customers, shaped like a segment's data (no delta files);
    None when the warehouse predates the model (nothing to export, the segments still are). Like the segments,
    a night without a recommender leaves recommender_model_version out."""
    if not relation_exists(con, NBA_ROWS):
        return None

    def query(sql: str) -> list[tuple]:
        try:
            return con.execute(sql, [day]).fetchall()
        except duckdb.Error as exc:
            raise ExportInputError(f"{NBA_ROWS} cannot be read ({str(exc).splitlines()[0]}): build the dbt models "
                                   "first (dbt build --select +next_best_action_export_rows, or the nightly).") from exc

    def distinct(column: str) -> list[str]:
        # from the mart, so a night whose actions are all none still names its run and models
        return [str(v) for (v,) in query(f"SELECT DISTINCT {column} FROM {NBA_MART} WHERE as_of_date = $1 "
                                         f"AND {column} IS NOT NULL ORDER BY 1")]

    versions = {m: _one_or_many(distinct(col)) for m, col in MODEL_VERSION_COLUMNS.items()}
    columns = [c for c in NBA_COLUMNS if versions["recommender"] is not None or c != "recommender_model_version"]
    rows = query(f"SELECT {', '.join(columns)} FROM {NBA_ROWS} WHERE as_of_date = $1 AND consent_ok "
                 "ORDER BY customer_id")
    members = query(f"SELECT count(*) FROM {NBA_ROWS} WHERE as_of_date = $1")[0][0]
    return SegmentData(
        segment=NBA_SEGMENT, columns=columns, rows=rows, members=members, entered=[], exited=[],
        run_ids=distinct("run_id"), model_versions=versions,
        feature_snapshot_dates=distinct("feature_snapshot_date"), delta_files=False,
    )
