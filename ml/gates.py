"""Promotion gates as code: when may a challenger replace the champion?

A challenger is promoted only if (1) it beats the current champion, measured on the same holdout, by a
configured margin on the model's primary metric, and (2) it passes absolute floors, some of them
relative to a simple baseline measured on that holdout too (a churn model that cannot beat "days since
last order" by 0.02 AUC is not worth its complexity). The first model of a name has no champion to
beat and only has to pass the floors.

Metric names are flat: the model's own metrics (`roc_auc`), the champion's on the same holdout are
passed separately, and baselines are `baseline_<name>_<metric>` (`baseline_recency_roc_auc`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace


@dataclass(frozen=True)
class Floor:
    """`metric` must be >= (or <= when higher_is_better is False) a threshold.

    The threshold is `value`, or the metric named `reference` plus `margin` (minus, for lower-is-better
    metrics). `use_abs` compares |metric| (for signed errors such as aggregate_error_pct).
    """

    metric: str
    value: float | None = None
    reference: str | None = None
    margin: float = 0.0
    higher_is_better: bool = True
    use_abs: bool = False

    def describe(self) -> str:
        op = ">=" if self.higher_is_better else "<="
        lhs = f"|{self.metric}|" if self.use_abs else self.metric
        if self.reference:
            sign = "+" if self.higher_is_better else "-"
            return f"{lhs} {op} {self.reference} {sign} {self.margin:g}"
        return f"{lhs} {op} {self.value:g}"


@dataclass(frozen=True)
class GateConfig:
    primary_metric: str
    higher_is_better: bool = True
    # required improvement over the champion on the primary metric; `relative` makes it a fraction
    min_improvement: float = 0.0
    relative: bool = False
    floors: tuple[Floor, ...] = field(default_factory=tuple)

    def with_margin(self, margin: float | None) -> GateConfig:
        return self if margin is None else replace(self, min_improvement=margin)


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    observed: float | None
    threshold: float | None
    rule: str


@dataclass(frozen=True)
class GateResult:
    passed: bool
    checks: tuple[Check, ...]

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        if self.passed:
            return "passed: " + "; ".join(c.rule for c in self.checks)
        return "failed: " + "; ".join(f"{c.rule} (observed {_fmt(c.observed)}, threshold {_fmt(c.threshold)})"
                                      for c in self.failed)

    def as_dict(self) -> dict:
        return {"passed": self.passed, "checks": [asdict(c) for c in self.checks]}


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _finite(x) -> bool:
    return x is not None and isinstance(x, int | float) and math.isfinite(x)


DEFAULT_GATES: dict[str, GateConfig] = {
    "churn": GateConfig(
        primary_metric="roc_auc",
        higher_is_better=True,
        min_improvement=0.002,
        floors=(
            Floor("roc_auc", reference="baseline_recency_roc_auc", margin=0.02),
            Floor("pr_auc", reference="baseline_recency_pr_auc", margin=0.0),
            Floor("brier", reference="baseline_base_rate_brier", higher_is_better=False),
        ),
    ),
    "clv": GateConfig(
        primary_metric="mae",
        higher_is_better=False,
        min_improvement=0.01,
        relative=True,
        floors=(
            Floor("mae", reference="baseline_run_rate_mae", higher_is_better=False),
            Floor("top_decile_capture", reference="baseline_run_rate_top_decile_capture", margin=0.0),
            Floor("aggregate_error_pct", value=25.0, higher_is_better=False, use_abs=True),
        ),
    ),
    "recommender": GateConfig(
        primary_metric="ndcg_at_10",
        higher_is_better=True,
        min_improvement=0.0,
        floors=(
            Floor("ndcg_at_10", reference="baseline_popularity_ndcg_at_10", margin=0.0),
            Floor("catalog_coverage", value=0.05),
        ),
    ),
}


def evaluate_gates(config: GateConfig, challenger: dict[str, float], champion: dict[str, float] | None
                   ) -> GateResult:
    """Check the challenger's metrics (its own plus `baseline_*` ones) against floors and the champion.

    `champion` holds the champion's metrics on the same holdout, or None when there is no champion
    yet (or it cannot be scored on the current features: then only the floors decide).
    """
    checks: list[Check] = []
    for floor in config.floors:
        observed = challenger.get(floor.metric)
        if floor.reference is not None:
            ref = challenger.get(floor.reference)
            threshold = None if not _finite(ref) else (
                ref + floor.margin if floor.higher_is_better else ref - floor.margin)
        else:
            threshold = floor.value
        if not _finite(observed) or threshold is None:
            checks.append(Check(f"floor:{floor.metric}", False, observed if _finite(observed) else None,
                                threshold, floor.describe() + " (metric missing)"))
            continue
        value = abs(observed) if floor.use_abs else observed
        ok = value >= threshold if floor.higher_is_better else value <= threshold
        checks.append(Check(f"floor:{floor.metric}", bool(ok), float(observed), float(threshold), floor.describe()))

    metric = config.primary_metric
    observed = challenger.get(metric)
    champ = None if champion is None else champion.get(metric)
    if _finite(champ):
        delta = abs(champ) * config.min_improvement if config.relative else config.min_improvement
        threshold = champ + delta if config.higher_is_better else champ - delta
        op = ">=" if config.higher_is_better else "<="
        ok = _finite(observed) and (observed >= threshold if config.higher_is_better else observed <= threshold)
        margin = f"{config.min_improvement:.1%}" if config.relative else f"{config.min_improvement:g}"
        checks.append(Check(f"champion:{metric}", bool(ok), observed if _finite(observed) else None,
                            float(threshold), f"{metric} {op} champion {metric} {champ:.4g} by margin {margin}"))
    else:
        checks.append(Check(f"champion:{metric}", _finite(observed), observed if _finite(observed) else None,
                            None, "no champion to compare with: floors only"))
    return GateResult(all(c.passed for c in checks), tuple(checks))


def baseline_gates(kind: str) -> GateConfig:
    """The gates of a baseline registered as the model to serve (recency for churn; BG/NBD x Gamma-Gamma or the run
    rate for CLV): no floors - the floors are measured against the baselines, so a baseline cannot fail them and
    is what a shop gets until an ML candidate beats it - but a current champion must still be beaten by the margin,
    so a baseline never replaces a better model."""
    return replace(DEFAULT_GATES[kind], floors=())


def best_baseline(config: GateConfig, candidates: dict[str, dict[str, float]]) -> str | None:
    """The baseline with the best primary metric (on the holdout) among `candidates` ({name: metrics}); None when
    none has a finite value."""
    finite = {k: m[config.primary_metric] for k, m in candidates.items() if _finite(m.get(config.primary_metric))}
    if not finite:
        return None
    return (max if config.higher_is_better else min)(finite, key=lambda k: finite[k])


def floors_only(config: GateConfig, challenger: dict[str, float]) -> GateResult:
    """The floors of `config` alone (no champion comparison): did the candidate beat the baselines?"""
    return evaluate_gates(replace(config, min_improvement=0.0), challenger, None)
