"""The warehouse queries behind an export: a segment's members with scores and recommendations, its deltas,
and the consent rule - applied here, in SQL, so no row without the required consent ever reaches a file.

Consent (`consent_ok`) is true only when every source says true: marts.segment_members.marketing_consent
(all segments of the date), feature_store.customer_features.marketing_consent of the date (when the table
exists) and the contacts table's current marketing_consent (when it has one: a withdrawal since the date
wins, e.g. when an old date is re-exported). Unknown counts as no (fail closed). The email and the names
are emitted only when consent_ok; segments with required_consent `marketing` keep only those rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from c360.segments import Segment, changes_sql, relation_exists

MEMBERS = "marts.segment_members"
CONTACTS = "pii.customer_contacts"
# The dbt model is currently named pii_customer_contacts (schema pii, no alias): accept both, contract first.
CONTACTS_CANDIDATES = (CONTACTS, "pii.pii_customer_contacts")
RECOMMENDATIONS = "marts.customer_recommendations"
FEATURES = "feature_store.customer_features"

MODEL_VERSION_COLUMNS = {"churn": "churn_model_version", "clv": "clv_model_version",
                         "recommender": "recommender_model_version"}
TAIL_COLUMNS = ("run_id", "as_of_date", "churn_model_version", "clv_model_version", "recommender_model_version",
                "feature_snapshot_date")
DELTA_COLUMNS = ("customer_id", "email", "segment", "change", "as_of_date", "run_id")

# Column -> SQL over the aliases m (member row), c (contacts), r (top-3 recommendations), k (consent).
_EXPR = {
    "customer_id": "m.customer_id",
    "email": "CASE WHEN k.consent_ok THEN c.email END",
    "first_name": "CASE WHEN k.consent_ok THEN c.first_name END",
    "last_name": "CASE WHEN k.consent_ok THEN c.last_name END",
    "segment": "m.segment",
    # Rounded so files stay readable and byte-stable across float noise in upstream recomputation.
    "churn_probability": "round(m.churn_probability, 6)",
    "churn_decile": "m.churn_decile::INTEGER",
    "p_alive": "round(m.p_alive, 6)",
    "predicted_value_eur": "round(m.predicted_value_eur, 2)",
    "value_decile": "m.value_decile::INTEGER",
    "rec_1": "r.rec_1",
    "rec_2": "r.rec_2",
    "rec_3": "r.rec_3",
    "run_id": "m.run_id::VARCHAR",
    "as_of_date": "m.as_of_date::DATE",
    "churn_model_version": "m.churn_model_version::VARCHAR",
    "clv_model_version": "m.clv_model_version::VARCHAR",
    "recommender_model_version": "m.recommender_model_version::VARCHAR",
    "feature_snapshot_date": "m.feature_snapshot_date::DATE",
}


class ExportInputError(RuntimeError):
    """A table the export needs is missing; the message says which and what builds it."""


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

    @property
    def excluded_without_consent(self) -> int:
        return self.members - len(self.rows)


REC_COLUMNS = ("rec_1", "rec_2", "rec_3", "recommender_model_version")


def export_columns(segment: Segment, recommendations: bool = True) -> list[str]:
    """File columns: customer_id, email, segment, the segment's chosen columns, then run and model metadata.
    Without recommendations for the date (a shop without product data has no recommender), rec_1..rec_3 and
    recommender_model_version are left out rather than exported as always-empty columns."""
    columns = ["customer_id", "email", "segment", *segment.columns, *TAIL_COLUMNS]
    return columns if recommendations else [c for c in columns if c not in REC_COLUMNS]


def has_recommendations(con, day: date) -> bool:
    """True when the date's scores came with recommendations (a recommender champion scored the night)."""
    return bool(con.execute(f"SELECT count(recommender_model_version) FROM {MEMBERS} WHERE as_of_date = $1",
                            [day]).fetchone()[0]) or bool(
        relation_exists(con, RECOMMENDATIONS)
        and con.execute(f"SELECT count(*) FROM {RECOMMENDATIONS} WHERE as_of_date = $1", [day]).fetchone()[0])


def consent_rule_text(segment: Segment) -> str:
    if segment.consent_column:
        return ("only customers with marketing_consent = true as of as_of_date and still now (segment_members, "
                "feature store and contacts agree; unknown = no); email and names from pii")
    return ("all segment members (service use); email and names blank unless marketing_consent = true as of "
            "as_of_date and still now")


def _ctes(con) -> tuple[str, list[str]]:
    """Shared CTEs (consent k, contacts c, recommendations r) for date $1; plus warnings on missing inputs."""
    warnings = []
    contacts = next((c for c in CONTACTS_CANDIDATES if relation_exists(con, c)), None)
    if contacts is None:
        raise ExportInputError(f"{CONTACTS} does not exist: the exports take emails from it only. "
                               "Build the dbt pii models (dbt build --select pii) first.")
    consent_sources = [f"SELECT customer_id, marketing_consent FROM {MEMBERS} WHERE as_of_date = $1::DATE"]
    if relation_exists(con, FEATURES):
        consent_sources.append(f"SELECT customer_id, marketing_consent FROM {FEATURES} WHERE as_of_date = $1::DATE")
    schema, _, table = contacts.partition(".")
    if con.execute("SELECT count(*) FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 "
                   "AND column_name = 'marketing_consent'", [schema, table]).fetchone()[0]:
        consent_sources.append(f"SELECT customer_id, marketing_consent FROM {contacts}")
    if relation_exists(con, RECOMMENDATIONS):
        recs = f"""
            SELECT customer_id,
                   max(product_id::VARCHAR) FILTER (WHERE pos = 1) AS rec_1,
                   max(product_id::VARCHAR) FILTER (WHERE pos = 2) AS rec_2,
                   max(product_id::VARCHAR) FILTER (WHERE pos = 3) AS rec_3
            FROM (SELECT customer_id, product_id,
                         row_number() OVER (PARTITION BY customer_id ORDER BY rank, product_id) AS pos
                  FROM {RECOMMENDATIONS} WHERE as_of_date = $1::DATE)
            WHERE pos <= 3 GROUP BY customer_id"""
    else:
        warnings.append(f"{RECOMMENDATIONS} does not exist: rec_1..rec_3 are empty")
        recs = "SELECT NULL::VARCHAR AS customer_id, NULL::VARCHAR AS rec_1, NULL::VARCHAR AS rec_2, " \
               "NULL::VARCHAR AS rec_3 WHERE false"
    sql = f"""
        k AS (SELECT customer_id, bool_and(coalesce(marketing_consent, false)) AS consent_ok
              FROM ({' UNION ALL '.join(consent_sources)}) GROUP BY customer_id),
        c AS (SELECT customer_id, email, first_name, last_name FROM {contacts}
              QUALIFY row_number() OVER (PARTITION BY customer_id
                                         ORDER BY email NULLS LAST, first_name, last_name) = 1),
        r AS ({recs})"""
    return sql, warnings


def _distinct(con, column: str, day: date, segment: str | None) -> list[str]:
    where = "as_of_date = $1" + (" AND segment = $2" if segment else "")
    params = [day, segment] if segment else [day]
    return [str(v) for (v,) in con.execute(
        f"SELECT DISTINCT {column} FROM {MEMBERS} WHERE {where} AND {column} IS NOT NULL ORDER BY 1", params
    ).fetchall()]


def _one_or_many(values: list[str]) -> str | list[str] | None:
    return None if not values else values[0] if len(values) == 1 else values


def load_segment_data(con, segment: Segment, day: date) -> SegmentData:
    """The consent-filtered rows of one segment at `day`, its entered/exited rows and its metadata."""
    if not relation_exists(con, MEMBERS):
        raise ExportInputError(f"{MEMBERS} does not exist: build the segment marts (dbt) before exporting.")
    ctes, warnings = _ctes(con)
    recommendations = has_recommendations(con, day)
    columns = export_columns(segment, recommendations)
    if not recommendations and any(c in segment.columns for c in REC_COLUMNS):
        warnings.append(f"no recommendations for {day} (no recommender champion scored the night: a shop without "
                        "product interactions has none): rec_1..rec_3 and recommender_model_version left out")
    consent_filter = "AND k.consent_ok IS TRUE" if segment.consent_column else ""
    rows = con.execute(
        f"""WITH {ctes}
            SELECT {', '.join(f'{_EXPR[col]} AS {col}' for col in columns)}
            FROM {MEMBERS} m
            LEFT JOIN k USING (customer_id) LEFT JOIN c USING (customer_id) LEFT JOIN r USING (customer_id)
            WHERE m.as_of_date = $1::DATE AND m.segment = $2 {consent_filter}
            ORDER BY m.customer_id""",
        [day, segment.name],
    ).fetchall()
    members = con.execute(f"SELECT count(*) FROM {MEMBERS} WHERE as_of_date = $1 AND segment = $2",
                          [day, segment.name]).fetchone()[0]

    def deltas(change: str) -> list[tuple]:
        return con.execute(
            f"""WITH ch AS ({changes_sql(con)}), {ctes},
                run AS (SELECT min(run_id)::VARCHAR AS run_id FROM {MEMBERS} WHERE as_of_date = $1::DATE)
                SELECT ch.customer_id, CASE WHEN k.consent_ok THEN c.email END AS email, ch.segment, ch.change,
                       ch.as_of_date::DATE, (SELECT run_id FROM run)
                FROM ch LEFT JOIN k USING (customer_id) LEFT JOIN c USING (customer_id)
                WHERE ch.segment = $2 AND ch.change = $3 {consent_filter}
                ORDER BY ch.customer_id""",
            [day, segment.name, change],
        ).fetchall()

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
