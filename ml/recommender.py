"""Product recommendations: implicit-feedback ALS on time-decayed interaction strengths, with fallbacks.

Input: interaction events (customer_id, product_id, event_type, event_time), event types
`purchase` > `add_to_cart` > `product_view` (docs/models.md); optional products (product_id, category).

- strength(c, p) = sum over events of weight(type) * 0.5 ** (age_days / half_life_days)
- top-N per customer from ALS, excluding what the customer already bought; when ALS does not know
  the customer (cold start) or has too few new items, the list is filled with the most popular
  products of the customer's favourite category (source `category_popular`), then overall (`popular`).
- similar products per product: cosine similarity of the ALS item factors.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import numpy as np
import pandas as pd
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import StringIndexer
from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from ml import metrics

EVENT_WEIGHTS: dict[str, float] = {"purchase": 5.0, "add_to_cart": 3.0, "product_view": 1.0}
PURCHASE = "purchase"
EVENT_COLUMNS = ["customer_id", "product_id", "event_type", "event_time"]
# names as in dbt_project/models/staging/scores (accepted_values of `source`)
SOURCES = {"als": 0, "category_popular": 1, "popular": 2}


def _cutoff(as_of_date: str):
    """End of day `as_of_date` (UTC): events strictly before it are known at the snapshot."""
    return F.to_timestamp(F.date_add(F.lit(as_of_date).cast("date"), 1))


def check_events(events: DataFrame) -> None:
    missing = [c for c in EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(f"interaction events lack column(s) {missing}; expected {EVENT_COLUMNS} "
                         "(contract in docs/models.md, 'Recommender input')")


def interaction_strength(events: DataFrame, as_of_date: str, *, half_life_days: float = 60.0,
                         weights: dict[str, float] | None = None) -> DataFrame:
    """(customer_id, product_id, strength, purchased) from events known at the end of `as_of_date`."""
    check_events(events)
    weights = weights or EVENT_WEIGHTS
    cutoff = _cutoff(as_of_date)
    weight = F.coalesce(*[F.when(F.col("event_type") == k, F.lit(float(v))) for k, v in weights.items()])
    age_days = (F.unix_timestamp(cutoff) - F.unix_timestamp(F.col("event_time"))) / F.lit(86400.0)
    return (
        events.where((F.col("event_time") < cutoff) & F.col("event_type").isin(list(weights)))
        .where(F.col("customer_id").isNotNull() & F.col("product_id").isNotNull())
        .withColumn("w", weight * F.pow(F.lit(0.5), age_days / F.lit(float(half_life_days))))
        .groupBy("customer_id", "product_id")
        .agg(F.sum("w").alias("strength"),
             F.max((F.col("event_type") == PURCHASE).cast("int")).cast("boolean").alias("purchased"))
    )


def purchases_between(events: DataFrame, after_date: str, through_date: str) -> DataFrame:
    """Distinct (customer_id, product_id) purchased after the end of `after_date` up to the end of `through_date`."""
    return (events.where((F.col("event_type") == PURCHASE) & (F.col("event_time") >= _cutoff(after_date))
                         & (F.col("event_time") < _cutoff(through_date)))
            .select("customer_id", "product_id").distinct())


def popularity(strength: DataFrame, products: DataFrame | None = None) -> DataFrame:
    """(product_id, category, popularity): total decayed strength over all customers."""
    pop = strength.groupBy("product_id").agg(F.sum("strength").alias("popularity"))
    if products is not None:
        pop = pop.join(products.select("product_id", "category").dropDuplicates(["product_id"]), "product_id", "left")
    else:
        pop = pop.withColumn("category", F.lit(None).cast("string"))
    return pop


def favourite_categories(strength: DataFrame, products: DataFrame | None) -> DataFrame:
    """(customer_id, favourite_category): the category with the highest total strength per customer."""
    if products is None:
        return strength.select("customer_id").distinct().withColumn("favourite_category", F.lit(None).cast("string"))
    per_cat = (strength.join(products.select("product_id", "category"), "product_id")
               .groupBy("customer_id", "category").agg(F.sum("strength").alias("s")))
    w = Window.partitionBy("customer_id").orderBy(F.desc("s"), F.asc("category"))
    return (per_cat.withColumn("r", F.row_number().over(w)).where("r = 1")
            .select("customer_id", F.col("category").alias("favourite_category")))


def build_als(*, rank: int = 16, reg_param: float = 0.1, alpha: float = 10.0, max_iter: int = 10,
              seed: int = 7) -> Pipeline:
    """customer_id/product_id -> indices -> implicit ALS; `prediction` is the customer-product affinity."""
    return Pipeline(stages=[
        StringIndexer(inputCol="customer_id", outputCol="user_idx", handleInvalid="keep"),
        StringIndexer(inputCol="product_id", outputCol="item_idx", handleInvalid="keep"),
        ALS(userCol="user_idx", itemCol="item_idx", ratingCol="strength", implicitPrefs=True, rank=rank,
            regParam=reg_param, alpha=alpha, maxIter=max_iter, coldStartStrategy="nan", nonnegative=False,
            seed=seed),
    ])


def fit_als(strength: DataFrame, **params) -> PipelineModel:
    return build_als(**params).fit(strength.select("customer_id", "product_id", "strength"))


def _parts(model: PipelineModel):
    user_indexer, item_indexer, als = model.stages
    if not isinstance(als, ALSModel):
        raise TypeError("expected a PipelineModel of [StringIndexerModel, StringIndexerModel, ALSModel]")
    return user_indexer, item_indexer, als


def _label_frame(spark: SparkSession, labels: list[str], idx_col: str, id_col: str) -> DataFrame:
    return spark.createDataFrame(pd.DataFrame({idx_col: np.arange(len(labels), dtype="int32"), id_col: labels}))


def als_candidates(model: PipelineModel, customers: DataFrame, n: int) -> DataFrame:
    """(customer_id, product_id, score) - ALS top-n for the customers the model knows."""
    spark = customers.sparkSession
    user_indexer, item_indexer, als = _parts(model)
    users = _label_frame(spark, list(user_indexer.labels), "user_idx", "customer_id")
    items = _label_frame(spark, list(item_indexer.labels), "item_idx", "product_id")
    known = customers.select("customer_id").distinct().join(users, "customer_id")
    recs = als.recommendForUserSubset(known.select("user_idx"), n)
    return (recs.select("user_idx", F.explode("recommendations").alias("r"))
            .select("user_idx", F.col("r.item_idx").alias("item_idx"), F.col("r.rating").alias("score"))
            .join(known, "user_idx").join(items, "item_idx")
            .select("customer_id", "product_id", F.col("score").cast("double").alias("score")))


def recommend(model: PipelineModel | None, customers: DataFrame, seen: DataFrame, popular: DataFrame, *,
              n: int = 10, exclude_cap: int = 50) -> DataFrame:
    """Top-n (customer_id, rank, product_id, score, source) for every row of `customers`.

    customers: customer_id [, favourite_category]; seen: (customer_id, product_id) never to recommend
    (already bought); popular: output of `popularity`. ALS is asked for n + exclude_cap items so that
    excluding bought ones still leaves n; the rest is filled from popular items (category, then overall).
    `model=None` gives the popularity baseline.
    """
    fetch = n + exclude_cap
    if "favourite_category" not in customers.columns:
        customers = customers.withColumn("favourite_category", F.lit(None).cast("string"))
    customers = customers.select("customer_id", "favourite_category").dropDuplicates(["customer_id"])

    rank_pop = Window.orderBy(F.desc("popularity"), F.asc("product_id"))
    top_overall = popular.withColumn("r", F.row_number().over(rank_pop)).where(F.col("r") <= fetch)
    rank_cat = Window.partitionBy("category").orderBy(F.desc("popularity"), F.asc("product_id"))
    top_cat = (popular.where(F.col("category").isNotNull())
               .withColumn("r", F.row_number().over(rank_cat)).where(F.col("r") <= fetch))

    # fallback scores only order items within their source; sources are ordered by priority
    parts = [
        customers.crossJoin(F.broadcast(top_overall.select("product_id", "popularity")))
        .select("customer_id", "product_id", F.col("popularity").alias("score"),
                F.lit("popular").alias("source")),
        customers.join(F.broadcast(top_cat.select(F.col("category").alias("favourite_category"), "product_id",
                                                  "popularity")), "favourite_category")
        .select("customer_id", "product_id", F.col("popularity").alias("score"),
                F.lit("category_popular").alias("source")),
    ]
    if model is not None:
        parts.append(als_candidates(model, customers, fetch).withColumn("source", F.lit("als")))
    candidates = parts[0].unionByName(parts[1])
    for extra in parts[2:]:
        candidates = candidates.unionByName(extra)

    priority = F.coalesce(*[F.when(F.col("source") == k, F.lit(v)) for k, v in SOURCES.items()])
    candidates = (candidates.join(seen.select("customer_id", "product_id").distinct(),
                                  ["customer_id", "product_id"], "left_anti")
                  .withColumn("priority", priority))
    best = Window.partitionBy("customer_id", "product_id").orderBy("priority", F.desc("score"))
    order = Window.partitionBy("customer_id").orderBy("priority", F.desc("score"), F.asc("product_id"))
    return (candidates.withColumn("k", F.row_number().over(best)).where("k = 1")
            .withColumn("rank", F.row_number().over(order)).where(F.col("rank") <= n)
            .select("customer_id", F.col("rank").cast("int"), "product_id", "score", "source"))


def similar_items_from_factors(ids: list, factors: np.ndarray, n: int, block: int = 2048) -> pd.DataFrame:
    """(product_id, rank, similar_product_id, similarity): top-n cosine neighbours, the item itself excluded."""
    f = np.asarray(factors, dtype=float)
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    f = f / np.where(norms == 0, 1.0, norms)
    k = min(n, len(ids) - 1)
    rows = []
    if k <= 0:
        return pd.DataFrame(columns=["product_id", "rank", "similar_product_id", "similarity"])
    for start in range(0, len(ids), block):
        sims = f[start:start + block] @ f.T
        for i in range(sims.shape[0]):
            sims[i, start + i] = -np.inf
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        for i in range(sims.shape[0]):
            order = top[i][np.argsort(-sims[i, top[i]], kind="mergesort")]
            for r, j in enumerate(order, start=1):
                rows.append((ids[start + i], r, ids[j], float(sims[i, j])))
    return pd.DataFrame(rows, columns=["product_id", "rank", "similar_product_id", "similarity"])


def similar_products(model: PipelineModel, n: int = 10) -> DataFrame:
    """Top-n similar products for every product the model knows (item factors are small: collected)."""
    _, item_indexer, als = _parts(model)
    labels = list(item_indexer.labels)
    factors = als.itemFactors.orderBy("id").collect()
    ids = [labels[row["id"]] for row in factors]
    matrix = np.array([row["features"] for row in factors], dtype=float)
    pdf = similar_items_from_factors(ids, matrix, n)
    spark = als.itemFactors.sparkSession
    schema = "product_id string, rank int, similar_product_id string, similarity double"
    return spark.createDataFrame(pdf.astype({"rank": "int32"}), schema=schema)


# --------------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------------

def evaluate(recommendations: DataFrame, relevant: DataFrame, k: int, catalog_size: int) -> dict[str, float]:
    """precision/recall/NDCG@k and catalog coverage; both inputs are small enough to collect per user."""
    recs: dict[str, list] = {}
    for row in recommendations.select("customer_id", "rank", "product_id").orderBy("customer_id", "rank").collect():
        recs.setdefault(row["customer_id"], []).append(row["product_id"])
    rel: dict[str, set] = {}
    for row in relevant.select("customer_id", "product_id").collect():
        rel.setdefault(row["customer_id"], set()).add(row["product_id"])
    return metrics.ranking_metrics(recs, rel, k, catalog_size)


def known_purchases(events: DataFrame, as_of_date: str) -> DataFrame:
    """Distinct (customer_id, product_id) bought by the end of `as_of_date`: never recommended again."""
    return (events.where((F.col("event_type") == PURCHASE) & (F.col("event_time") < _cutoff(as_of_date)))
            .select("customer_id", "product_id").distinct())


def holdout_split(events: DataFrame, train_end: str, holdout_end: str) -> tuple[DataFrame, DataFrame]:
    """(seen, relevant): purchases known at train_end, and *new* purchases in (train_end, holdout_end]."""
    seen = known_purchases(events, train_end)
    relevant = purchases_between(events, train_end, holdout_end).join(seen, ["customer_id", "product_id"],
                                                                       "left_anti")
    return seen, relevant


def evaluate_setup(events: DataFrame, products: DataFrame | None, train_end: str, holdout_end: str, *,
                   half_life_days: float = 60.0) -> dict:
    """Everything needed to evaluate any recommender trained with data up to `train_end`."""
    strength = interaction_strength(events, train_end, half_life_days=half_life_days).cache()
    seen, relevant = holdout_split(events, train_end, holdout_end)
    relevant = relevant.cache()
    customers = relevant.select("customer_id").distinct().join(favourite_categories(strength, products),
                                                               "customer_id", "left")
    catalog = (products.select("product_id") if products is not None else events.select("product_id")).distinct()
    return {"strength": strength, "seen": seen, "relevant": relevant, "customers": customers,
            "popular": popularity(strength, products).cache(), "catalog_size": catalog.count()}


def evaluate_model(model: PipelineModel | None, setup: dict, k: int = 10) -> dict[str, float]:
    recs = recommend(model, setup["customers"], setup["seen"], setup["popular"], n=k).cache()
    out = evaluate(recs, setup["relevant"], k, setup["catalog_size"])
    if model is not None:
        by_source = {r["source"]: r["n"] for r in recs.groupBy("source").agg(F.count(F.lit(1)).alias("n")).collect()}
        out["als_share"] = by_source.get("als", 0) / max(sum(by_source.values()), 1)
    recs.unpersist()
    return out


def param_grid(ranks: Iterable[int], reg_params: Iterable[float], alphas: Iterable[float]) -> list[dict]:
    return [{"rank": r, "reg_param": g, "alpha": a} for r, g, a in itertools.product(ranks, reg_params, alphas)]
