"""Feature lists and feature preparation shared by training and scoring (contract: docs/feature_store.md).

Models take the feature-store columns below, cast by `prepare_features` (numbers and booleans to
double, categories to string). Missing-value rules live inside each model's pipeline (a SQL stage),
so a logged model scores raw feature-store rows and its signature lists exactly these columns.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

KEY = ["customer_id", "as_of_date"]
CHURN_LABEL = "churned"                      # labels_churn.churned (BOOLEAN)
VALUE_LABEL = "future_net_revenue_eur"       # labels_value.future_net_revenue_eur (DECIMAL)
LABEL = "label"                              # the double label column the Spark estimators read
WEIGHT = "class_weight"

# Numeric features and the SQL used to fill their nulls inside the pipeline. A null has a meaning in
# the feature store ("never visited", "fewer than two purchase days"), so each gets a value that
# says the same thing to a tree rather than a column mean.
NUMERIC_FEATURES: dict[str, str] = {
    "tenure_days": "coalesce(tenure_days, days_since_first_order, 0)",
    "days_since_first_order": "coalesce(days_since_first_order, 0)",
    "days_since_last_order": "coalesce(days_since_last_order, days_since_first_order, 0)",
    "orders_count": "coalesce(orders_count, 0)",
    "purchase_days": "coalesce(purchase_days, 0)",
    "items_count": "coalesce(items_count, 0)",
    "cancelled_orders_count": "coalesce(cancelled_orders_count, 0)",
    "gross_revenue_eur": "coalesce(gross_revenue_eur, 0)",
    "returned_revenue_eur": "coalesce(returned_revenue_eur, 0)",
    "net_revenue_eur": "coalesce(net_revenue_eur, 0)",
    "avg_order_value_eur": "coalesce(avg_order_value_eur, 0)",
    "orders_with_return_count": "coalesce(orders_with_return_count, 0)",
    "return_rate": "coalesce(return_rate, 0)",
    # fewer than two purchase days: the customer's whole age is the (open) gap so far
    "avg_days_between_orders": "coalesce(avg_days_between_orders, days_since_first_order, 0)",
    "orders_7d": "coalesce(orders_7d, 0)",
    "orders_30d": "coalesce(orders_30d, 0)",
    "orders_90d": "coalesce(orders_90d, 0)",
    "net_revenue_eur_7d": "coalesce(net_revenue_eur_7d, 0)",
    "net_revenue_eur_30d": "coalesce(net_revenue_eur_30d, 0)",
    "net_revenue_eur_90d": "coalesce(net_revenue_eur_90d, 0)",
    "rfm_recency_score": "coalesce(rfm_recency_score, 0)",
    "rfm_frequency_score": "coalesce(rfm_frequency_score, 0)",
    "rfm_monetary_score": "coalesce(rfm_monetary_score, 0)",
    "favourite_category_share": "coalesce(favourite_category_share, 0)",
    "distinct_categories": "coalesce(distinct_categories, 0)",
    "bgnbd_frequency": "coalesce(bgnbd_frequency, 0)",
    "bgnbd_recency_days": "coalesce(bgnbd_recency_days, 0)",
    "bgnbd_t_days": "coalesce(bgnbd_t_days, 0)",
    "bgnbd_monetary_eur": "coalesce(bgnbd_monetary_eur, 0)",
    "marketing_consent": "coalesce(marketing_consent, 0)",
    "has_profile": "coalesce(has_profile, 0)",
    "has_tracking": "coalesce(has_tracking, 0)",
    "sessions_7d": "coalesce(sessions_7d, 0)",
    "sessions_30d": "coalesce(sessions_30d, 0)",
    "sessions_90d": "coalesce(sessions_90d, 0)",
    "product_views_7d": "coalesce(product_views_7d, 0)",
    "product_views_30d": "coalesce(product_views_30d, 0)",
    "product_views_90d": "coalesce(product_views_90d, 0)",
    "cart_adds_7d": "coalesce(cart_adds_7d, 0)",
    "cart_adds_30d": "coalesce(cart_adds_30d, 0)",
    "cart_adds_90d": "coalesce(cart_adds_90d, 0)",
    "abandoned_carts_90d": "coalesce(abandoned_carts_90d, 0)",
    "cart_abandonment_rate_90d": "coalesce(cart_abandonment_rate_90d, 0)",
    # never seen on the site: as long ago as the customer's age (a tree only needs "large")
    "days_since_last_visit": "coalesce(days_since_last_visit, tenure_days, days_since_first_order, 3650)",
    "share_sessions_desktop_90d": "coalesce(share_sessions_desktop_90d, 0)",
    "share_sessions_mobile_90d": "coalesce(share_sessions_mobile_90d, 0)",
    "share_sessions_tablet_90d": "coalesce(share_sessions_tablet_90d, 0)",
}

CATEGORICAL_FEATURES: list[str] = [
    "country",
    "acquisition_channel",
    "rfm_segment",
    "favourite_category",
    "first_touch_channel",
    "last_touch_channel",
]

# Which customers a model scores: churn and value need a purchase history (a customer who never
# ordered cannot "stop" ordering, and BG/NBD starts at the first purchase).
POPULATION_FILTER = "coalesce(orders_count, 0) > 0"

# The minimum a snapshot must have for a model to make sense; other features are optional.
REQUIRED_FEATURES = ["days_since_last_order", "orders_count", "net_revenue_eur"]


def available_features(columns: list[str]) -> tuple[list[str], list[str]]:
    """The numeric and categorical features of the contract that `columns` has (in contract order).

    Raises with the missing names when a required one is absent, so a renamed dbt column fails
    training loudly instead of silently dropping the strongest feature.
    """
    present = set(columns)
    missing = [c for c in REQUIRED_FEATURES if c not in present]
    if missing:
        raise ValueError(
            f"feature snapshot lacks required column(s) {missing}; see docs/feature_store.md "
            f"(columns present: {sorted(present)[:20]}...)"
        )
    numeric = [c for c in NUMERIC_FEATURES if c in present]
    categorical = [c for c in CATEGORICAL_FEATURES if c in present]
    return numeric, categorical


def split_columns(columns: list[str]) -> tuple[list[str], list[str]]:
    """(numeric, categorical) of a model's input columns (e.g. from its signature), for `prepare_features`."""
    return [c for c in columns if c not in CATEGORICAL_FEATURES], [c for c in columns if c in CATEGORICAL_FEATURES]


def prepare_features(df: DataFrame, numeric: list[str], categorical: list[str]) -> DataFrame:
    """Cast features to the types the models' signatures use: double (numbers, booleans) and string.

    Decimal money columns and nullable integers become doubles so the same column has one type in
    training, in Spark scoring and in pandas (pyfunc) scoring. Other columns pass through.
    """
    casts = {c: F.col(c).cast("int").cast("double") if dict(df.dtypes)[c] == "boolean" else F.col(c).cast("double")
             for c in numeric}
    casts.update({c: F.col(c).cast("string") for c in categorical})
    return df.withColumns(casts)


def fill_sql(numeric: list[str], categorical: list[str], prefix: str = "f_") -> str:
    """The SQLTransformer statement that fills nulls: numeric `f_<name>` doubles, categories `<name>` or 'unknown'.

    Fill expressions may refer to other feature-store columns; only those among `numeric` are in the
    model's input, so references to absent columns are dropped from the coalesce.
    """
    present = set(numeric)
    parts = []
    for name in numeric:
        parts.append(f"CAST({_restrict_coalesce(NUMERIC_FEATURES[name], present)} AS DOUBLE) AS {prefix}{name}")
    for name in categorical:
        parts.append(f"coalesce(nullif({name}, ''), 'unknown') AS {prefix}{name}")
    return "SELECT *, " + ", ".join(parts) + " FROM __THIS__"


# Derived features, computed inside the pipelines from the filled `f_` columns (so the signature still lists only
# feature-store columns). They state what a linear model cannot build itself: the latest sign of life (an order or a
# visit: browsing, like buying, stops when a customer drops out), the purchase rate so far, silence relative to
# the customer's usual gap, and logs of the heavy-tailed day counts. name -> (SQL over f_ columns, inputs).
DERIVED_FEATURES: dict[str, tuple[str, list[str]]] = {
    "days_since_last_activity": ("least(f_days_since_last_order, f_days_since_last_visit)",
                                 ["days_since_last_order", "days_since_last_visit"]),
    "log_days_since_last_activity": ("ln(1 + greatest(least(f_days_since_last_order, f_days_since_last_visit), 0))",
                                     ["days_since_last_order", "days_since_last_visit"]),
    "log_days_since_last_order": ("ln(1 + greatest(f_days_since_last_order, 0))", ["days_since_last_order"]),
    "purchase_rate": ("f_purchase_days / (greatest(f_days_since_first_order, 0) + 30)",
                      ["purchase_days", "days_since_first_order"]),
    "silence_ratio": ("f_days_since_last_order / (greatest(f_avg_days_between_orders, 0) + 7)",
                      ["days_since_last_order", "avg_days_between_orders"]),
}


def derived_features(numeric: list[str]) -> list[str]:
    """The derived features whose inputs are all among `numeric` (their columns are `f_<name>`)."""
    present = set(numeric)
    return [name for name, (_, inputs) in DERIVED_FEATURES.items() if set(inputs) <= present]


def derived_sql(numeric: list[str], prefix: str = "f_") -> str | None:
    """The SQLTransformer statement adding the derived features (after `fill_sql`), or None if none applies."""
    names = derived_features(numeric)
    if not names:
        return None
    parts = [f"CAST({DERIVED_FEATURES[n][0]} AS DOUBLE) AS {prefix}{n}" for n in names]
    return "SELECT *, " + ", ".join(parts) + " FROM __THIS__"


def _restrict_coalesce(expr: str, present: set[str]) -> str:
    """Drop arguments of `coalesce(a, b, 0)` that name columns not in `present`."""
    inner = expr[len("coalesce("):-1] if expr.startswith("coalesce(") else None
    if inner is None:
        return expr
    args = [a.strip() for a in inner.split(",")]
    kept = [a for a in args if not a.isidentifier() or a in present]
    return kept[0] if len(kept) == 1 else "coalesce(" + ", ".join(kept) + ")"


def label_columns(df: DataFrame, label: str, *, boolean: bool) -> DataFrame:
    """Add the double `label` column the estimators read (1.0 = churned) from the feature-store label."""
    col = F.col(label).cast("int") if boolean else F.col(label)
    return df.withColumn(LABEL, col.cast("double"))
