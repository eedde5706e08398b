"""Scores into the marts and segments per date (dbt): the nightly order of things on the tiny base scenario.

Night 01-19: the dbt build without the score part, then the scores are published (Parquet, as the scoring job
writes them) and the score part is built; the same for night 01-20. Checks the score marts, customer_360's latest scores, segment members (feature and score predicates,
consent as of the date, model versions) and the entered/exited deltas; then that a rerun replaces a date (also
when its scores were withdrawn) and that a hand run without segment definitions leaves the segments alone.
A second warehouse builds the repository's segments.yml with nothing scored yet.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import duckdb
import pytest

from c360.config import get_settings
from c360.marketing.segments import segments_dbt_var
from c360.pipeline import transform
from tests import dbt_testkit as kit

pytestmark = pytest.mark.integration

D1, D2 = date(2025, 1, 19), date(2025, 1, 20)

SEGMENTS = {"segments": [
    {"name": "buyers", "where": "orders_count >= 1", "required_consent": "marketing",
     "consent_column": "marketing_consent"},
    {"name": "high_churn", "where": "churn_decile >= 8", "required_consent": "marketing",
     "consent_column": "marketing_consent"},
    # like segments.yml's win_back: coalesce() would admit unscored customers were scores not required
    {"name": "maybe_alive", "where": "coalesce(p_alive, 1) >= 0.5", "required_consent": "none",
     "consent_column": None},
]}

# churn deciles per night: high_churn is {C1, C3} on 01-19 and {C2, C3, C4} on 01-20
CHURN_DECILES = {D1: {"C1": 9, "C2": 3, "C3": 8, "C4": 1}, D2: {"C1": 2, "C2": 9, "C3": 8, "C4": 10}}

TABLES = {
    "marts.customer_scores": "as_of_date, customer_id",
    "marts.customer_recommendations": "as_of_date, customer_id, rank",
    "marts.segment_members": "as_of_date, segment, customer_id",
    "marts.segment_evaluations": "as_of_date, segment",
    "marts.segment_changes": "as_of_date, segment, customer_id",
    "marts.customer_360": "customer_id",
}


# churn reasons on 01-20 only: 01-19's partition has no reason columns at all (scored before they existed)
REASONS = {D2: {"C2": {"churn_reason_1": "days_since_last_order high", "churn_reason_2": "sessions_30d low"}}}


def load_scores(day: date, deciles: dict[str, int]) -> None:
    """Publish a date's scores and recommendations as the scoring job does (Parquet, replacing the date)."""
    kit.publish_scores(
        day,
        [{"customer_id": customer, "as_of_date": day, "run_id": f"run-{day}", "churn_probability": decile / 10 - 0.05,
          "churn_decile": decile, "p_alive": 1 - decile / 10 + 0.05, "expected_purchases": 1.5,
          "predicted_value_eur": 100.0 + decile, "value_decile": 11 - decile, "churn_model_version": "7",
          "clv_model_version": "3", "recommender_model_version": "5", "feature_snapshot_date": day,
          "scored_at": datetime.combine(day, datetime.min.time(), UTC), **REASONS.get(day, {}).get(customer, {})}
         for customer, decile in deciles.items()],
        [{"customer_id": customer, "as_of_date": day, "rank": rank, "product_id": product, "score": 1.0 / rank,
          "source": "als", "run_id": f"run-{day}", "recommender_model_version": "5"}
         for customer in deciles for rank, product in enumerate(["P1", "P2", "P3"], start=1)],
    )


def query(sql: str, params=None) -> list[tuple]:
    with duckdb.connect(str(get_settings().warehouse_path), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def members(day: date, segment: str) -> set[str]:
    return {r[0] for r in query(
        "select customer_id from marts.segment_members where as_of_date = ? and segment = ?", [day, segment])}


def changes(day: date, segment: str) -> set[tuple[str, str]]:
    return set(query(
        "select customer_id, change from marts.segment_changes where as_of_date = ? and segment = ?", [day, segment]))


def evaluated(day: date) -> dict[str, bool]:
    return dict(query("select segment, is_evaluated from marts.segment_evaluations where as_of_date = ?", [day]))


def snapshot() -> dict[str, list[tuple]]:
    with duckdb.connect(str(get_settings().warehouse_path), read_only=True) as con:
        return {t: kit.table_rows(con, t, order) for t, order in TABLES.items()}


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    """Two nights, each: the nightly's dbt build (without the score part), then the scores are published and the
    score part is built. State captured after each step."""
    root = tmp_path_factory.mktemp("dbt_segments")
    with pytest.MonkeyPatch.context() as mp:
        kit.configure_env(mp, root)
        settings = get_settings()
        with kit.connect() as con:
            kit.seed_base(con)
        state = {"settings": settings}
        for day in (D1, D2):
            state[f"build_{day}"] = transform.run_dbt([*kit.BUILD_MODELS, "--exclude", transform.SCORES_SELECTOR],
                                                      day, settings, segments=SEGMENTS)
            if day == D1:
                with kit.connect() as con:
                    state["d1_relations_before_scores"] = {r[0] for r in con.execute(
                        "select table_schema || '.' || table_name from information_schema.tables").fetchall()}
            else:
                state["d2_evaluated_before_scores"] = evaluated(D2)
            load_scores(day, CHURN_DECILES[day])
            state[f"build_scores_{day}"] = transform.run_dbt(
                ["build", "-s", transform.SCORES_SELECTOR], day, settings, segments=SEGMENTS
            )
        yield state


def test_score_part_builds_with_its_data_tests(nights):
    for day in (D1, D2):
        result = nights[f"build_scores_{day}"]
        assert result.success and not result.failures
        ran = {n.unique_id for n in result.nodes}
        for model in ("customer_scores", "customer_recommendations", "customer_360", "segment_members",
                      "segment_evaluations", "segment_changes", "segment_export_rows"):
            assert f"model.c360.{model}" in ran
        # the feature store is not rebuilt by the score part
        assert "model.c360.customer_features" not in ran
        assert any(u.startswith("unit_test.c360.segment_changes") for u in ran)
        assert any(u.startswith("unit_test.c360.segment_export_rows") for u in ran)
        assert any(u.endswith(".next_best_action_retain_reason_names_the_churn_drivers") for u in ran)


def test_the_first_build_of_the_night_leaves_the_score_part_to_after_scoring(nights):
    """Each model is built once a night: the first build makes the feature store and the other marts, and nothing
    that reads scores (which would be published with yesterday's scores, then rebuilt)."""
    first = {n.unique_id for n in nights[f"build_{D1}"].nodes}
    assert "model.c360.customer_features" in first and "model.c360.fct_orders" in first
    for model in ("customer_scores", "customer_recommendations", "customer_360", "segment_members",
                  "segment_evaluations", "segment_changes", "segment_export_rows"):
        assert f"model.c360.{model}" not in first
    assert "marts.customer_360" not in nights["d1_relations_before_scores"]
    assert "marts.segment_members" not in nights["d1_relations_before_scores"]
    # 01-20's first build leaves 01-19's segments as they were: evaluated, with their scores
    assert nights["d2_evaluated_before_scores"] == {}


def test_customer_scores_and_recommendations_per_date(nights):
    rows = query("select as_of_date, count(*), min(run_id), max(churn_model_version) from marts.customer_scores "
                 "group by 1 order by 1")
    assert rows == [(D1, 4, "run-2025-01-19", "7"), (D2, 4, "run-2025-01-20", "7")]
    # reasons where the night's partition has them; an older partition without the columns reads as null
    reasons = query("select as_of_date, customer_id, churn_reason_1, churn_reason_2, churn_reason_3 "
                    "from marts.customer_scores where churn_reason_1 is not null or customer_id = 'C2' order by 1")
    assert reasons == [(D1, "C2", None, None, None),
                       (D2, "C2", "days_since_last_order high", "sessions_30d low", None)]
    recs = query("select as_of_date, customer_id, rank, product_id, recommender_model_version "
                 "from marts.customer_recommendations where customer_id = 'C1' order by 1, 3")
    assert recs[:3] == [(D1, "C1", 1, "P1", "5"), (D1, "C1", 2, "P2", "5"), (D1, "C1", 3, "P3", "5")]
    assert len(recs) == 6


def test_customer_360_carries_the_latest_scores(nights):
    rows = dict((r[0], r[1:]) for r in query(
        "select customer_id, churn_decile, value_decile, churn_model_version, clv_model_version, scored_as_of "
        "from marts.customer_360"))
    assert rows["C2"] == (9, 2, "7", "3", D2)
    assert set(rows) == {"C1", "C2", "C3", "C4"}


def test_next_best_action_per_scored_customer_and_night(nights):
    """The score part decides one action per scored customer and night (default rules: cap 14 days, retain from churn
    0.5 and 50 EUR): C1 at risk is retained on 01-19 and withdraws consent by 01-20; C3, without orders, is nurtured
    on 01-19 and capped on 01-20; C2 and C4 never consented. The export rows keep only who still consents now."""
    for day in (D1, D2):
        assert "model.c360.customer_next_best_action" in {n.unique_id for n in nights[f"build_scores_{day}"].nodes}
    rows = {(r[0], r[1]): r[2:] for r in query(
        "select as_of_date, customer_id, action, suppressed_by, best_candidate_action, previous_action_date, reason "
        "from marts.customer_next_best_action")}
    assert len(rows) == 8
    assert rows[(D1, "C1")][:3] == ("retain", None, "retain")
    assert rows[(D1, "C1")][4].startswith("retain: churn risk 85% (retain from 50%)")
    assert rows[(D1, "C3")][:2] == ("nurture", None)
    assert {c: rows[(D1, c)][:2] for c in ("C2", "C4")} == {"C2": ("none", "no_consent"), "C4": ("none", "no_consent")}
    assert rows[(D2, "C1")][:2] == ("none", "no_consent")
    assert rows[(D2, "C3")][:4] == ("none", "contact_cap", "nurture", D1)
    assert rows[(D2, "C3")][4] == ("contacted on 2025-01-19 (nurture): at most one action every 14 days, "
                                   "next from 2025-02-02")
    assert query("select as_of_date, customer_id, action, email from pii.next_best_action_export_rows "
                 "where consent_ok order by 1, 2") == [(D1, "C3", "nurture", "c3@example.com")]


def test_customer_360_shows_likes_versus_buys(nights):
    rows = {r[0]: r[1:] for r in query(
        "select customer_id, top_viewed_category_90d, top_bought_category, viewed_products_30d, "
        "viewed_not_bought_products_30d, cart_abandon_products_30d, last_cart_abandon_product_30d "
        "from marts.customer_360")}
    assert rows["C1"] == ("bags", "bags", 2, 1, 1, "P3")
    assert rows["C3"] == (None, None, 0, 0, 0, None)


def test_segment_members_per_date(nights):
    assert members(D1, "buyers") == members(D2, "buyers") == {"C1", "C2", "C4"}
    assert members(D1, "high_churn") == {"C1", "C3"}
    assert members(D2, "high_churn") == {"C2", "C3", "C4"}
    # p_alive = 1.05 - decile / 10 >= 0.5  <=>  decile <= 5
    assert members(D2, "maybe_alive") == {"C1"}
    row = query(
        "select churn_decile, churn_probability, marketing_consent, run_id, churn_model_version, clv_model_version, "
        "recommender_model_version, feature_snapshot_date from marts.segment_members "
        "where as_of_date = ? and segment = 'high_churn' and customer_id = 'C1'", [D1])
    assert row == [(9, pytest.approx(0.85), True, "run-2025-01-19", "7", "3", "5", D1)]
    # consent as of the date: C1 withdraws on 01-20
    consent = dict(query("select as_of_date, marketing_consent from marts.segment_members "
                         "where segment = 'buyers' and customer_id = 'C1'"))
    assert consent == {D1: True, D2: False}
    # C4 has no profile: no consent; a buyers member without scores would have null score columns
    assert query("select count(*) from marts.segment_members where marketing_consent is null") == [(0,)]


def test_segment_changes_entered_and_exited(nights):
    assert changes(D1, "high_churn") == {("C1", "entered"), ("C3", "entered")}
    assert changes(D2, "high_churn") == {("C2", "entered"), ("C4", "entered"), ("C1", "exited")}
    assert changes(D1, "buyers") == {("C1", "entered"), ("C2", "entered"), ("C4", "entered")}
    assert changes(D2, "buyers") == set()
    assert evaluated(D2) == {"buyers": True, "high_churn": True, "maybe_alive": True}
    previous = query("select distinct previous_as_of_date from marts.segment_changes where as_of_date = ?", [D2])
    assert previous == [(D1,)]


def test_export_rows_follow_members_changes_and_consent(nights):
    """pii.segment_export_rows on the built nights: every member row once, the changes as extra rows, contact
    details only with consent, the date's top-3 recommendations."""
    for day in (D1, D2):
        assert query("select segment, customer_id from pii.segment_export_rows where as_of_date = ? and is_member "
                     "order by all", [day]) == query("select segment, customer_id from marts.segment_members "
                                                    "where as_of_date = ? order by all", [day])
        assert query("select segment, customer_id, change from pii.segment_export_rows where as_of_date = ? "
                     "and change is not null order by all", [day]) == query(
            "select segment, customer_id, change from marts.segment_changes where as_of_date = ? order by all", [day])
    rows = {r[0]: r[1:] for r in query(
        "select customer_id, is_member, change, consent_ok, email is not null, rec_1, date_has_recommendations "
        "from pii.segment_export_rows where as_of_date = ? and segment = 'high_churn'", [D2])}
    # C1 exited high_churn on 01-20, the day it withdrew consent; C4 has no profile, so no consent and no email
    assert rows["C1"] == (False, "exited", False, False, "P1", True)
    assert rows["C4"] == (True, "entered", False, False, "P1", True)
    assert query("select count(*) from pii.segment_export_rows where email is not null and not consent_ok") == [(0,)]
    c1 = query("select rec_1, rec_2, rec_3, churn_probability, run_id from pii.segment_export_rows "
               "where as_of_date = ? and segment = 'high_churn' and customer_id = 'C1'", [D1])
    assert c1 == [("P1", "P2", "P3", pytest.approx(0.85), "run-2025-01-19")]


def test_rerun_replaces_the_date_and_a_run_without_definitions_keeps_it(nights):
    settings = nights["settings"]
    before = snapshot()
    transform.run_dbt(["build", "-s", transform.SCORES_SELECTOR], D2, settings, segments=SEGMENTS)
    assert snapshot() == before, "rerunning the score part for a date changed the tables"

    # a hand run without the segment definitions: the segment tables stay as they are
    transform.run_dbt(["run", "-s", "path:models/marts/segments"], D2, settings)
    assert snapshot() == before

    # the date's scores are withdrawn (re-scoring failed and was rolled back): the rerun follows the scores on disk
    kit.withdraw_scores(D2)
    transform.run_dbt(["build", "-s", transform.SCORES_SELECTOR], D2, settings, segments=SEGMENTS)
    assert query("select count(*) from marts.customer_scores where as_of_date = ?", [D2]) == [(0,)]
    assert members(D2, "high_churn") == set()
    assert evaluated(D2)["high_churn"] is False
    assert changes(D2, "high_churn") == set()  # not evaluated: no deltas, not "everybody exited"
    assert changes(D2, "buyers") == set()
    scored = dict(query("select customer_id, scored_as_of from marts.customer_360"))
    assert set(scored.values()) == {D1}  # falls back to each customer's latest scores

    # the scores come back: the deltas are computed again versus 01-19
    load_scores(D2, CHURN_DECILES[D2])
    transform.run_dbt(["build", "-s", transform.SCORES_SELECTOR], D2, settings, segments=SEGMENTS)
    assert changes(D2, "high_churn") == {("C2", "entered"), ("C4", "entered"), ("C1", "exited")}


def test_a_date_scored_or_rescored_later_is_built_by_the_next_run(nights):
    """The score marts rebuild the run date and every date published since they last saw it (scored_dates_to_build:
    the Parquet files' modification times, one-second resolution)."""
    settings = nights["settings"]
    d0 = date(2025, 1, 18)
    # a backfill scores 01-18 after the fact; 01-19 is re-scored
    load_scores(d0, {"C1": 5, "C2": 5})
    load_scores(D1, {c: 1 for c in CHURN_DECILES[D1]})
    before_d2 = query("select * from marts.customer_scores where as_of_date = ? order by customer_id", [D2])
    transform.run_dbt(["build", "-s", transform.SCORES_SELECTOR], D2, settings, segments=SEGMENTS)
    assert query("select customer_id, churn_decile from marts.customer_scores where as_of_date = ? order by 1",
                 [d0]) == [("C1", 5), ("C2", 5)]
    assert {r[0] for r in query("select churn_decile from marts.customer_scores where as_of_date = ?", [D1])} == {1}
    assert query("select count(*) from marts.customer_recommendations where as_of_date = ?", [d0]) == [(6,)]
    assert query("select * from marts.customer_scores where as_of_date = ? order by customer_id", [D2]) == before_d2


def test_segment_definitions_must_be_well_formed(nights):
    bad = {"segments": [{"name": "Bad Name", "where": "true"}]}
    with pytest.raises(transform.DbtRunError, match="not a lower-case identifier"):
        transform.run_dbt(["run", "-s", "segment_members"], D2, nights["settings"], segments=bad)


@pytest.mark.parametrize("where, refusal", [
    ("churn_decile >= 8) union all select 'buyers' as segment, * replace (true as marketing_consent) "
     "from candidates where (true", "contains 'union'"),
    ("churn_decile >= 8) or (true", "unbalanced parentheses"),
])
def test_dbt_refuses_hostile_rules_given_by_hand(nights, where, refusal):
    """The second line of defence: definitions passed to dbt directly (not through segments.yml and its checked,
    rendered rules) still cannot leave the predicate; the table is left as it was."""
    before = query("select * from marts.segment_members order by all")
    bad = {"segments": [{"name": "high_churn", "where": where}]}
    with pytest.raises(transform.DbtRunError, match=refusal):
        transform.run_dbt(["run", "-s", "segment_members"], D2, nights["settings"], segments=bad)
    assert query("select * from marts.segment_members order by all") == before


def test_the_score_views_read_the_writers_columns(nights):
    """One scores contract: raw.scores / raw.recommendations (dbt's views over the Parquet) have exactly the columns
    the scoring job writes, in its order, plus _loaded_at."""
    from spark_jobs.score import RECOMMENDATION_COLUMNS, SCORES_COLUMNS

    for table, columns in (("scores", SCORES_COLUMNS), ("recommendations", RECOMMENDATION_COLUMNS)):
        found = query("select column_name, table_type from information_schema.columns join information_schema.tables "
                      "using (table_schema, table_name) "
                      f"where table_schema = 'raw' and table_name = '{table}' order by ordinal_position")
        assert [n for n, _ in found] == [*columns, "_loaded_at"]
        assert {t for _, t in found} == {"VIEW"}


def test_repository_segments_build_with_empty_scores(tmp_path, monkeypatch):
    """segments.yml as shipped, nothing scored yet (raw.scores is an empty view): the nightly build and the score
    part succeed, score segments are not evaluated and have no members, the others do."""
    kit.configure_env(monkeypatch, tmp_path)
    with kit.connect() as con:
        kit.seed_base(con)
    assert transform.build(D2, get_settings()).success
    assert transform.build_scores(D2, get_settings()).success
    definitions = {s["name"]: s["where"] for s in segments_dbt_var()["segments"]}
    rows = dict((r[0], r[1:]) for r in query(
        "select segment, needs_scores, is_evaluated, members from marts.segment_evaluations where as_of_date = ?",
        [D2]))
    assert set(rows) == set(definitions)
    for name, (needs_scores, is_evaluated, count) in rows.items():
        assert is_evaluated is (not needs_scores), name
        if needs_scores:
            assert count == 0, f"{name} has members without scores"
    assert rows["high_value_at_risk"][0] and rows["win_back"][0] and rows["vip"][0]
    # C4's only order is on 01-18; C1 added to cart on 01-14 and has not ordered since 01-10
    assert members(D2, "new_customer_nurture") == {"C4"}
    assert members(D2, "cart_abandoners") == {"C1"}
    assert query("select count(*), count(churn_probability) from marts.customer_360") == [(4, 0)]

    # the night's scores arrive: build_scores evaluates the score segments too
    load_scores(D2, CHURN_DECILES[D2])
    assert transform.build_scores(D2, get_settings()).success
    evaluated_now = dict(query("select segment, is_evaluated from marts.segment_evaluations where as_of_date = ?",
                               [D2]))
    assert all(evaluated_now.values())
    # value_decile = 11 - churn decile: nobody is in the top value tenth on 01-20 (C1 has 9)
    assert members(D2, "vip") == set()
    assert query("select count(*) from marts.segment_members where as_of_date = ? and run_id = 'run-2025-01-20'",
                 [D2]) == [(len(members(D2, "new_customer_nurture")) + len(members(D2, "cart_abandoners")),)]
    assert query("select count(*), count(churn_probability) from marts.customer_360") == [(4, 4)]


def test_per_category_segments_match_the_warehouse_categories(tmp_path, monkeypatch):
    """segments.yml names categories as people write them ("Bags"); the warehouse stores them in lower case: the
    per-category segments still find their customers (C1's favourite is bags, C2's shoes)."""
    kit.configure_env(monkeypatch, tmp_path)
    with kit.connect() as con:
        kit.seed_base(con)
    definitions = tmp_path / "segments.yml"
    definitions.write_text(
        "per_category:\n"
        "  categories: [Bags, Shoes, Toys]\n"
        "  template:\n"
        "    name: likes_{slug}\n"
        "    description: favourite category {category}\n"
        "    where: favourite_category = {category_sql} and favourite_category_share >= 0.4\n"
        "    required_consent: none\n"
        "    destination: analytics\n")
    assert transform.build(D2, get_settings(), segments_file=definitions).success
    assert transform.build_scores(D2, get_settings(), segments_file=definitions).success
    assert members(D2, "likes_bags") == {"C1"}
    assert members(D2, "likes_shoes") == {"C2"}
    assert members(D2, "likes_toys") == set()


def test_a_warehouse_built_before_the_churn_reasons_gains_them(nights):
    """customer_scores appends new contract columns instead of failing the nightly: a warehouse whose table predates
    the churn reasons gets the columns on the next score build, filled for the dates it rebuilds, null on the others.
    (Last in the module: it rebuilds 01-20 of the shared warehouse.)"""
    reasons = ["churn_reason_1", "churn_reason_2", "churn_reason_3"]
    with kit.connect() as con:
        for column in reasons:
            con.execute(f"alter table marts.customer_scores drop column {column}")
    result = transform.run_dbt(["build", "-s", transform.SCORES_SELECTOR], D2, nights["settings"], segments=SEGMENTS)
    assert result.success and not result.failures
    rows = query("select as_of_date, churn_reason_1, churn_reason_2 from marts.customer_scores "
                 "where customer_id = 'C2' order by 1")
    assert (D2, "days_since_last_order high", "sessions_30d low") in rows
    assert {r[1:] for r in rows if r[0] != D2} == {(None, None)} and (D1, None, None) in rows
