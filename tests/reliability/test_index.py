"""Which tests cover each case of issue #13 ("Hostile input and faults"): its numbered findings (Why 1-12) and the
cases that already behaved well (Deliver 11: rerun identical, SIGKILL mid-scoring, export crash points, late and
duplicate rows, lock held, missing champion, consent withdrawal; plus erasure completeness and the drift hold).

The test below checks that every listed test exists and carries the `reliability` marker (module `pytestmark` or
decorator), so that `pytest -m reliability` runs each case and a rename cannot silently drop one. It reads the
files with `ast`: no test module is imported (Spark, Airflow), so it takes milliseconds.
Node ids are `path::function`; every parametrisation of a listed function counts.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parents[2]
R = "tests/reliability/"

CASES: dict[str, list[str]] = {
    "why 1: segment rules are raw SQL (union, consent override, read_text('/etc/passwd'))": [
        f"{R}test_segment_rules.py::test_hostile_rule_is_refused_naming_segment_text_and_vocabulary",
        f"{R}test_segment_rules.py::test_hostile_rule_in_the_per_category_template_is_refused",
        f"{R}test_segment_rules.py::test_a_category_name_cannot_inject_sql",
        f"{R}test_segment_rules.py::test_cli_refuses_the_hostile_file",
        f"{R}test_segment_rules.py::test_a_bad_segments_file_stops_the_night_before_dbt_and_changes_nothing",
        f"{R}test_ui.py::test_save_refuses_stale_versions_generated_segments_and_bad_rules",
        f"{R}test_ui.py::test_a_rule_the_warehouse_cannot_run_is_not_saved",
    ],
    "why 2: the landing zone follows symlinks, reads sub-folders": [
        f"{R}test_landing.py::test_symlinked_file_in_a_partition_is_rejected_not_read",
        f"{R}test_landing.py::test_symlinked_folders_are_never_followed",
        f"{R}test_landing.py::test_subfolders_of_a_partition_are_not_read_and_warned",
        f"{R}test_landing.py::test_keys_that_leave_the_root_are_refused",
        f"{R}test_landing.py::test_s3_objects_outside_the_prefix_are_never_read",
    ],
    "why 3: a failed night hangs on 'No tasks to run'": [
        f"{R}test_nights.py::test_a_failed_task_whose_child_loops_on_no_tasks_to_run_ends_the_night_naming_it",
        f"{R}test_nights.py::test_a_deterministic_task_failure_ends_the_night_within_seconds_naming_task_and_log",
        f"{R}test_nights.py::test_a_run_that_executed_no_task_is_a_problem_naming_dag_date_and_what_to_do",
    ],
    "why 4: SIGTERM does not stop the writer": [
        f"{R}test_nights.py::test_a_signal_stops_the_whole_tree_of_a_fake_night",
        f"{R}test_nights.py::test_sigterm_stops_the_whole_tree_and_an_immediate_rerun_succeeds",
        f"{R}test_nights.py::test_a_sigkilled_nightly_leaves_no_orphaned_airflow_run",
    ],
    "why 5: a binary or unreadable file half-loads a date, unnamed": [
        f"{R}test_ingest_faults.py::test_an_unreadable_file_names_itself_and_commits_nothing",
        f"{R}test_ingest_faults.py::test_an_unsupported_file_type_fails_the_entity_naming_it_and_loads_nothing",
        f"{R}test_ingest_faults.py::test_a_partition_holding_only_an_unsupported_file_is_named_not_waited_for",
        f"{R}test_ingest_faults.py::test_binary_csv_reports_the_byte_not_a_bare_unicode_error",
        f"{R}test_ingest_faults.py::test_a_300_file_date_with_one_random_file_loads_all_or_nothing",
        f"{R}test_cli_errors.py::test_ingest_of_a_date_with_an_unreadable_file_ends_with_one_message_naming_it",
        f"{R}test_cli_errors.py::test_a_user_facing_error_is_one_message_and_exit_1",
    ],
    "why 6: schema drift is silent": [
        f"{R}test_ingest_faults.py::test_a_drifted_header_rejects_the_whole_file_and_fails_the_entity",
        f"{R}test_ingest_faults.py::test_with_the_rate_raised_the_drifted_rows_are_quarantined_and_counted",
        f"{R}test_ingest_faults.py::test_unknown_columns_in_parquet_and_json_are_a_schema_mismatch",
        f"{R}test_ingest_faults.py::test_a_rate_above_the_threshold_on_a_judged_date_fails",
    ],
    "why 7: volume is never checked": [
        f"{R}test_volume.py::test_a_day_far_from_the_median_holds",
        f"{R}test_volume.py::test_a_daily_feed_that_lands_nothing_or_an_empty_file_is_low",
        f"{R}test_volume.py::test_a_10x_night_holds_exports_and_scoring_until_overridden",
        f"{R}test_volume.py::test_accept_volume_releases_only_the_nights_of_that_run",
    ],
    "why 8: disk full and out of memory hide their cause": [
        f"{R}test_resource_faults.py::test_a_resource_fault_during_load_names_its_cause_and_loads_nothing",
    ],
    "why 9: lock path cut, raw S3 traceback, drift hold not in the summary, dry run, erasure leftovers": [
        f"{R}test_nights.py::test_the_lock_error_names_the_full_holder_path_and_pid_and_what_to_do",
        "tests/test_storage_s3.py::test_an_unreachable_endpoint_fails_fast_with_one_line_naming_it",
        "tests/test_storage_s3.py::test_the_cli_ends_an_unreachable_landing_zone_with_that_line_and_no_traceback",
        f"{R}test_nights.py::test_the_console_summary_says_when_exports_were_held_and_why",
        "tests/test_privacy.py::test_dry_run_says_would_and_never_claims_a_change",
        "tests/test_privacy.py::test_after_erasure_no_file_under_the_data_folder_names_the_customer",
    ],
    "why 10: replacing a bad file does not repair the warehouse; one row stops every night": [
        f"{R}test_downstream_rules.py::test_dates_before_the_earliest_date_are_quarantined",
        f"{R}test_downstream_rules.py::test_a_currency_without_a_rate_is_quarantined_and_the_base_currency_needs_none",
        f"{R}test_downstream_rules.py::test_a_return_needs_its_sale_in_raw_or_in_the_same_load",
        f"{R}test_file_identity.py::test_a_deleted_or_replaced_file_takes_its_rows_with_it",
        "tests/test_dbt_pipeline.py::test_an_order_that_vanished_from_raw_leaves_order_lines_and_fct_orders",
        f"{R}test_replaced_file.py::test_a_replaced_file_older_than_the_lookback_leaves_no_row_in_any_model",
        "tests/test_dbt_nightly_tests_scope.py::test_a_failed_data_test_names_its_offending_rows_their_file_and_what_to_do",
    ],
    "why 11: file identity is the absolute path": [
        f"{R}test_file_identity.py::test_a_copy_of_the_landing_zone_at_another_path_loads_nothing_twice",
        f"{R}test_file_identity.py::test_rows_loaded_under_absolute_paths_are_migrated_once",
    ],
    "why 12: operating a night (retries, progress, failed-night report, gates, rerun totals)": [
        f"{R}test_nights.py::test_deterministic_errors_fail_at_once_and_transient_ones_keep_their_retries",
        f"{R}test_nights.py::test_progress_lines_carry_each_tasks_rows_and_skip_note_from_the_stage_log",
        "tests/test_report.py::test_champions_accepted_without_their_gates_are_warnings",
        "tests/test_report.py::test_a_failed_rerun_reports_its_own_stages_the_failing_test_and_its_rows",
    ],
    "already passed: rerun identical": [
        "tests/test_ingest.py::test_rerun_of_a_date_replaces_instead_of_duplicating",
        "tests/test_exports.py::test_rerun_gives_identical_files",
        "tests/test_spark_score.py::test_score_writes_both_partitions_and_reruns_identically",
        "tests/test_dbt_pipeline.py::test_rerun_same_date_gives_identical_tables",
        "tests/test_nightly_end_to_end.py::test_rerunning_a_date_changes_no_mart_and_no_export",
    ],
    "already passed: SIGKILL mid-scoring": [
        f"{R}test_scoring_kill.py::test_sigkill_mid_scoring_keeps_previous_partitions_and_rerun_is_identical",
    ],
    "already passed: export crash points": [
        f"{R}test_publish_faults.py::test_export_killed_mid_publish_leaves_previous_manifest_valid_and_rerun_publishes",
        "tests/test_exports.py::test_failure_mid_export_keeps_previous_manifest",
    ],
    "already passed: late and duplicate rows": [
        "tests/test_ingest.py::test_late_files_are_picked_up_once_and_history_loads_on_first_run",
        "tests/test_ingest.py::test_resent_line_with_changed_payload_is_loaded_as_a_new_version",
        "tests/test_ingest_generated.py::test_late_events_and_resent_lines_are_loaded",
        "tests/test_ingest_generated.py::test_every_dirt_row_gets_its_expected_reason_at_its_line",
        "tests/test_ingest_generated.py::test_landed_equals_loaded_plus_quarantined",
    ],
    "already passed: lock held": [
        "tests/test_ingest.py::test_second_process_holding_the_warehouse_gets_a_clear_error",
        f"{R}test_warehouse_lock.py::test_second_writer_fails_fast_naming_the_holder_and_writes_nothing",
        f"{R}test_warehouse_lock.py::test_export_while_locked_fails_naming_the_holder_and_keeps_the_published_export",
    ],
    "already passed: missing champion": [
        "tests/test_spark_score.py::test_refuses_without_champion_or_snapshot_and_writes_nothing",
    ],
    "already passed: consent withdrawal": [
        "tests/test_exports.py::test_feature_store_consent_withdrawal_wins",
        "tests/test_exports.py::test_current_consent_in_contacts_vetoes_a_stale_yes",
        f"{R}test_sync.py::test_consent_withdrawn_between_crash_and_rerun_is_dropped_not_sent",
    ],
    "erasure completeness": [
        "tests/test_privacy.py::test_erasure_removes_the_customer_everywhere_and_logs_only_a_hash",
        "tests/test_privacy.py::test_after_erasure_no_file_under_the_data_folder_names_the_customer",
        "tests/test_privacy.py::test_erasure_follows_the_identity_graph_to_every_customer_id_of_the_person",
        "tests/test_ingest_vendors.py::test_an_erased_customers_vendor_events_stay_out_on_every_reload",
        f"{R}test_person_erasure.py::test_a_member_already_gone_does_not_stop_the_erasure_and_nothing_else_is_lost",
    ],
    "drift hold": [
        "tests/test_monitoring.py::test_nightly_monitoring_records_and_holds",
        "tests/test_exports.py::test_hold_back_when_drift_is_high",
        f"{R}test_nights.py::test_the_console_summary_says_when_exports_were_held_and_why",
    ],
}


def _is_reliability_mark(node: ast.expr) -> bool:
    """`pytest.mark.reliability` (also inside a list, or called)."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.List | ast.Tuple):
        return any(_is_reliability_mark(e) for e in node.elts)
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "reliability"
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "mark"
    )


@cache
def _module(path: str) -> tuple[bool, dict[str, bool]]:
    """(module marked reliability, {test function: itself marked reliability})."""
    tree = ast.parse((REPO / path).read_text(), filename=path)
    module_marked = any(
        isinstance(n, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in n.targets)
        and _is_reliability_mark(n.value)
        for n in tree.body
    )
    functions = {
        n.name: any(_is_reliability_mark(d) for d in n.decorator_list)
        for n in tree.body
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    return module_marked, functions


def test_every_case_of_the_issue_has_a_test():
    assert all(CASES.values())
    assert {k.split(":")[0] for k in CASES if k.startswith("why ")} == {f"why {i}" for i in range(1, 13)}


@pytest.mark.parametrize("case", list(CASES))
def test_each_listed_test_exists_and_carries_the_reliability_marker(case):
    problems = []
    for node_id in CASES[case]:
        path, _, name = node_id.partition("::")
        if not (REPO / path).exists():
            problems.append(f"{node_id}: no such file")
            continue
        module_marked, functions = _module(path)
        if name not in functions:
            problems.append(f"{node_id}: no such test function")
        elif not (module_marked or functions[name]):
            problems.append(f"{node_id}: not marked reliability")
    assert not problems, "\n".join(problems)
