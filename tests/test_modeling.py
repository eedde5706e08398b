"""c360.modeling: which snapshots training asks for, and how a failed Spark job is reported."""

from __future__ import annotations

from datetime import date

import pytest

from c360 import modeling


def test_training_snapshots_every_28_days_back_to_the_start_of_history():
    dates = modeling.training_snapshot_dates(date(2026, 11, 4), date(2025, 10, 1))
    assert dates[-1] == date(2026, 10, 7)  # 28 days before the run date
    assert all((b - a).days == 28 for a, b in zip(dates, dates[1:], strict=False))
    assert dates[0] >= date(2025, 10, 29)  # at least 28 days of history behind the oldest
    assert len(dates) == 13
    # the grid is anchored on the run date: the next night asks for the next day's grid, not a re-shuffle
    assert modeling.training_snapshot_dates(date(2025, 10, 20), date(2025, 10, 1)) == []


def test_a_failing_job_raises_with_its_last_lines(c360_env):
    with pytest.raises(modeling.JobFailed) as err:
        modeling.run_job("spark_jobs.train", ["--model", "nonsense"], c360_env)
    assert "spark_jobs.train --model nonsense failed (exit 2)" in str(err.value)
    assert "invalid choice" in str(err.value)
