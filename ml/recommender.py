"""Product recommendations: implicit-feedback ALS on time-decayed interaction strengths, with fallbacks.

Input: interaction events (customer_id, product_id, event_type, event_time), event types
`purchase` > `add_to_cart` > `product_view` (docs/models.md); optional products (product_id, category).

- strength(c, p) = sum over events of weight(type) * 0.5 ** (age_days / half_life_days)
- top-N per customer from ALS, excluding what the customer already bought; when ALS does not know
  the customer (cold start) or has too few new items, the list is filled with the most popular
  products of the customer's favourite category (source `category_popular`), then overall (`popular`).
- similar products per product: cosine similarity of the ALS item factors.
- the popularity baseline (`popularity_model`): the same lists without ALS - recency-weighted popularity in the
  customer's favourite category, then overall, never what the customer bought. Registered as a version of the
  recommender when ALS misses its floors, so a shop always has a recommender champion.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import numpy as np
import pandas as pd
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import SQLTransformer, StringIndexer
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
    """(product_id, category, popularity): total decayed strength over all customers.

    Rounded to 9 decimals: a floating-point sum's last bits depend on the order Spark adds the rows in (partitioning),
    so two products with the same popularity could swap places between two runs of the same night; rounded, they tie
    exactly and product_id orders them."""
    pop = strength.groupBy("product_id").agg(F.round(F.sum("strength"), 9).alias("popularity"))
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
               .groupBy("customer_id", "category").agg(F.round(F.sum("strength"), 9).alias("s")))  # see popularity
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


# The popularity baseline as a registered model: one SQL stage with no learned state. What it recommends is computed
# at scoring time from the interactions known then (`recommendation_lists` with model=None), so a version never goes
# stale and its artifact holds no customer id. `prediction` is null: popularity has no customer-product affinity.
POPULARITY_STATEMENT = "SELECT *, CAST(NULL AS DOUBLE) AS prediction FROM __THIS__"


def popularity_model() -> PipelineModel:
    """The registrable marker of the popularity baseline (see POPULARITY_STATEMENT)."""
    return PipelineModel(stages=[SQLTransformer(statement=POPULARITY_STATEMENT)])


def is_popularity_model(model) -> bool:
    """Whether a loaded recommender version is the popularity baseline (then `recommendation_lists` gets None)."""
    stages = getattr(model, "stages", None) or []
    return (len(stages) == 1 and isinstance(stages[0], SQLTransformer)
            and stages[0].getStatement() == POPULARITY_STATEMENT)


def _parts(model: PipelineModel):
    stages = list(getattr(model, "stages", None) or [])
    if len(stages) != 3 or not isinstance(stages[2], ALSModel):
        what = "the popularity baseline" if is_popularity_model(model) else f"stages {[type(s).__name__ for s in stages]}"
        raise TypeError(f"expected a PipelineModel of [StringIndexerModel, StringIndexerModel, ALSModel], got {what}")
    return tuple(stages)


def _label_frame(spark: SparkSession, labels: list[str], idx_col: str, id_col: str) -> DataFrame:
    return spark.createDataFrame(pd.DataFrame({idx_col: np.arange(len(labels), dtype="int32"), id_col: labels}))


# one candidate item: ALS affinity, or popularity for the fallbacks (only comparable within a source)
_ITEM = "struct<product_id:string,score:double>"


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Per row of `scores`, the column indices of the k highest scores, by score desc then index asc (so equal
    scores rank by column: with columns in product_id order, by product_id)."""
    rows, cols = scores.shape
    k = min(k, cols)
    if k <= 0:
        return np.empty((rows, 0), dtype=np.int64)
    if k < cols:
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        kth = np.take_along_axis(scores, top, 1).min(axis=1)
        # argpartition picks arbitrarily among scores equal to the k-th: redo those (rare) rows exactly
        for r in np.flatnonzero((scores >= kth[:, None]).sum(axis=1) > k):
            idx = np.flatnonzero(scores[r] >= kth[r])
            top[r] = idx[np.lexsort((idx, -scores[r, idx]))][:k]
    else:
        top = np.broadcast_to(np.arange(cols), (rows, cols)).copy()
    order = np.lexsort((top, -np.take_along_axis(scores, top, 1)), axis=1)
    return np.take_along_axis(top, order, 1)


def _als_top_items_fn(product_ids: list[str], item_factors: np.ndarray, k: int, factors_col: str,
                      extra_col: str | None = None):
    """The mapInArrow function of `with_als_items`. It runs in the Python workers, which import this module (for
    `top_k_indices`): true in local mode; on a cluster ship the `ml` package, as for ml.value.BGNBDValue.
    With `extra_col` (an integer column) a row gets k + its value items (capped at the catalogue)."""
    items = np.ascontiguousarray(item_factors, dtype=np.float64).T
    chunk = max(1, 4_000_000 // max(items.shape[1], 1))  # rows per matrix product: bounded memory per worker

    def add_items(batches):
        import pyarrow as pa

        ids = pa.array(product_ids, type=pa.string())
        item_type = pa.struct([("product_id", pa.string()), ("score", pa.float64())])
        for batch in batches:
            factors = batch.column(batch.schema.get_field_index(factors_col))
            known = np.flatnonzero(factors.is_valid().to_numpy(zero_copy_only=False))
            width = items.shape[0]
            user = (factors.take(pa.array(known)).flatten().to_numpy(zero_copy_only=False)
                    .astype(np.float64).reshape(len(known), width))
            # items per row: k, or k + the row's extra (a customer's purchases, excluded later), within the catalogue
            per_row = np.full(len(known), k, dtype=np.int64)
            if extra_col is not None:
                extra = batch.column(batch.schema.get_field_index(extra_col)).to_numpy(zero_copy_only=False)
                per_row += np.nan_to_num(np.asarray(extra, dtype=np.float64)[known]).astype(np.int64)
            per_row = np.minimum(per_row, items.shape[1])
            kk = int(per_row.max()) if len(known) else min(k, items.shape[1])
            tops, scores = [], []
            for start in range(0, len(known), chunk):
                # float64 products of float32 factors, rounded to float32 like ALS's own scores
                s = (user[start:start + chunk] @ items).astype(np.float32)
                top = top_k_indices(s, kk)
                tops.append(top)
                scores.append(np.take_along_axis(s, top, 1))
            top = np.concatenate(tops) if tops else np.empty((0, kk), dtype=np.int64)
            score = np.concatenate(scores) if scores else np.empty((0, kk), dtype=np.float32)
            keep = np.arange(top.shape[1])[None, :] < per_row[:, None]  # each row's first per_row items
            values = pa.StructArray.from_arrays(
                [ids.take(pa.array(top[keep])), pa.array(score[keep].astype(np.float64))],
                fields=list(item_type))
            offsets = np.concatenate([[0], np.cumsum(per_row)]).astype(np.int32)
            lists = pa.ListArray.from_arrays(pa.array(offsets), values)
            # customers the model does not know get null
            position = np.full(batch.num_rows, -1)
            position[known] = np.arange(len(known))
            out = lists.take(pa.array(position, mask=position < 0))
            columns = [batch.column(i) for i, f in enumerate(batch.schema) if f.name != factors_col]
            names = [f.name for f in batch.schema if f.name != factors_col]
            yield pa.RecordBatch.from_arrays([*columns, out], names=[*names, "als_items"])

    return add_items


def with_als_items(model: PipelineModel, rows: DataFrame, k: int, extra_col: str | None = None) -> DataFrame:
    """`rows` (customer_id, other columns) plus `als_items`: the ALS model's top-k products for the customer as an
    array of (product_id, score), by score desc then product_id; null for customers the model does not know.
    `extra_col`: an integer column of `rows`; a row then gets k + that many products (e.g. how many it will
    exclude as already bought), within the catalogue.

    Scored in the Python workers with numpy, a batch of customers at a time: their factor rows times the item
    factor matrix (items x rank, collected), then the top k. ALSModel.recommendForUserSubset does the same in a
    per-customer Java loop followed by a regrouping shuffle, and was most of the scoring job's time.
    """
    from pyspark.sql.types import ArrayType, DoubleType, StringType, StructField, StructType

    spark = rows.sparkSession
    user_indexer, item_indexer, als = _parts(model)
    labels = list(item_indexer.labels)
    item_rows = als.itemFactors.collect()
    product_ids = [labels[r["id"]] for r in item_rows]
    order = sorted(range(len(product_ids)), key=product_ids.__getitem__)  # columns in product_id order
    factors = np.array([item_rows[i]["features"] for i in order], dtype=np.float32).reshape(len(order), als.rank)
    users = _label_frame(spark, list(user_indexer.labels), "user_idx", "customer_id")
    user_factors = users.join(als.userFactors.select(F.col("id").alias("user_idx"), F.col("features").alias(
        "_factors")), "user_idx").select("customer_id", "_factors")
    joined = rows.join(user_factors, "customer_id", "left")
    item = StructType([StructField("product_id", StringType()), StructField("score", DoubleType())])
    schema = StructType([f for f in joined.schema.fields if f.name != "_factors"]
                        + [StructField("als_items", ArrayType(item))])
    return joined.mapInArrow(_als_top_items_fn([product_ids[i] for i in order], factors, k, "_factors", extra_col),
                             schema)


def als_candidates(model: PipelineModel, customers: DataFrame, n: int) -> DataFrame:
    """(customer_id, product_id, score) - ALS top-n for the customers the model knows."""
    return (with_als_items(model, customers.select("customer_id").distinct(), n)
            .select("customer_id", F.inline("als_items")))


def _popular_lists(popular: DataFrame, k: int) -> tuple[DataFrame, DataFrame]:
    """The k most popular products overall (one row, `popular_items`) and per category (`favourite_category`,
    `category_items`), each an array of (product_id, score) ranked by popularity desc, then product_id."""
    def ranked():
        entries = F.sort_array(F.collect_list(F.struct("r", "product_id", "popularity")))
        return F.transform(entries, lambda x: F.struct(x["product_id"].alias("product_id"),
                                                       x["popularity"].cast("double").alias("score")))

    rank_pop = Window.orderBy(F.desc("popularity"), F.asc("product_id"))
    overall = (popular.withColumn("r", F.row_number().over(rank_pop)).where(F.col("r") <= k)
               .agg(ranked().alias("popular_items")))
    rank_cat = Window.partitionBy("category").orderBy(F.desc("popularity"), F.asc("product_id"))
    by_category = (popular.where(F.col("category").isNotNull())
                   .withColumn("r", F.row_number().over(rank_cat)).where(F.col("r") <= k)
                   .groupBy(F.col("category").alias("favourite_category")).agg(ranked().alias("category_items")))
    return overall, by_category


def _first_allowed(items, exclude, room):
    """The first `room` entries of `items` whose product_id is not in `exclude`, in order. At most size(exclude)
    entries can be dropped, so only the first room + size(exclude) are looked at."""
    head = F.slice(items, 1, room + F.size(exclude))
    allowed = F.slice(F.filter(head, lambda x: ~F.array_contains(exclude, x["product_id"])), 1, room)
    return F.when(room > 0, allowed).otherwise(F.array().cast(f"array<{_ITEM}>"))


def recommendation_lists(model: PipelineModel | None, customers: DataFrame, seen: DataFrame, popular: DataFrame,
                         *, n: int = 10, exclude_cap: int = 50) -> DataFrame:
    """(customer_id, recommendations): `recommend` as one row per customer with an array of up to n
    (product_id, score, source), best first. Customers without any candidate get an empty array.

    Each customer is one row carrying arrays (bought products, ALS top items, the top of their favourite
    category and overall, the last two broadcast): each source in priority order contributes its first items
    that are neither bought nor already picked, until n. No candidate rows are exploded, shuffled or windowed.
    `model` None or the popularity baseline (`popularity_model`): the popular lists only.
    """
    fetch = n + exclude_cap
    if model is not None and is_popularity_model(model):
        model = None  # the registered popularity baseline: the popular lists alone
    if "favourite_category" not in customers.columns:
        customers = customers.withColumn("favourite_category", F.lit(None).cast("string"))
    customers = customers.select("customer_id", "favourite_category").dropDuplicates(["customer_id"])
    bought = (seen.where(F.col("product_id").isNotNull()).groupBy("customer_id")
              .agg(F.collect_set("product_id").alias("bought")))
    overall, by_category = _popular_lists(popular, fetch)
    rows = customers.join(bought, "customer_id", "left")
    if model is not None:
        # ALS: n + every product the customer bought, so n remain after excluding them (a heavy buyer's top items
        # are mostly what they bought: with a fixed n + 50, 42 of 80 heavy buyers' slots fell back to popularity
        # in tests/test_spark_recommender.py); the popular lists are shared and stay at n + exclude_cap
        rows = rows.withColumn("_n_bought", F.when(F.col("bought").isNull(), F.lit(0))
                             .otherwise(F.size("bought")).cast("long"))
        rows = with_als_items(model, rows, n, extra_col="_n_bought").drop("_n_bought")
    else:
        rows = rows.withColumn("als_items", F.lit(None).cast(f"array<{_ITEM}>"))
    # the popular lists are small: broadcast, so the rows (and their arrays) are not shuffled again
    rows = rows.join(F.broadcast(by_category), "favourite_category", "left").crossJoin(F.broadcast(overall))

    empty = F.array().cast(f"array<{_ITEM}>")
    columns = {"als": "als_items", "category_popular": "category_items", "popular": "popular_items"}
    rows = rows.withColumn("_exclude", F.coalesce("bought", F.array().cast("array<string>")))
    picked: list[str] = []
    # each pick is its own column, so later picks refer to it instead of repeating its expression
    for source in sorted(SOURCES, key=SOURCES.get):
        room = F.lit(n) - sum((F.size(p) for p in picked), F.lit(0))
        rows = rows.withColumn(f"_{source}", _first_allowed(F.coalesce(columns[source], empty), F.col("_exclude"),
                                                             room))
        rows = rows.withColumn("_exclude", F.concat("_exclude", F.transform(f"_{source}", lambda x: x["product_id"])))
        picked.append(f"_{source}")
    return rows.select("customer_id", F.concat(*[_tag(p, p[1:]) for p in picked]).alias("recommendations"))


def _tag(items: str, source: str):
    return F.transform(items, lambda x: F.struct(x["product_id"].alias("product_id"), x["score"].alias("score"),
                                                 F.lit(source).alias("source")))


def explode_recommendations(lists: DataFrame) -> DataFrame:
    """(customer_id, rank, product_id, score, source) rows from `recommendation_lists` (rank 1 = best)."""
    return (lists.select("customer_id", F.posexplode("recommendations").alias("pos", "r"))
            .select("customer_id", (F.col("pos") + 1).cast("int").alias("rank"), F.col("r.product_id"),
                    F.col("r.score"), F.col("r.source")))


def recommend(model: PipelineModel | None, customers: DataFrame, seen: DataFrame, popular: DataFrame, *,
              n: int = 10, exclude_cap: int = 50) -> DataFrame:
    """Top-n (customer_id, rank, product_id, score, source) for every row of `customers`.

    customers: customer_id [, favourite_category]; seen: (customer_id, product_id) never to recommend
    (already bought); popular: output of `popularity`. ALS is asked for n + (the customer's bought products)
    items so that excluding them still leaves n; the rest is filled from popular items (category, then overall),
    each taken from its top n + exclude_cap. Within a source items rank by score desc, then product_id.
    `model=None` gives the popularity baseline.
    """
    return explode_recommendations(recommendation_lists(model, customers, seen, popular, n=n,
                                                        exclude_cap=exclude_cap))


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


def evaluate_popularity(setup: dict, k: int = 10, *, by_category: bool = True) -> dict[str, float]:
    """The popularity baselines: `recommend` without a model, i.e. the most popular products the customer has not
    bought, first in the customer's favourite category (`by_category`) or overall only (plain popularity)."""
    customers = setup["customers"]
    if not by_category:
        customers = customers.withColumn("favourite_category", F.lit(None).cast("string"))
    return evaluate_model(None, {**setup, "customers": customers}, k)


def param_grid(ranks: Iterable[int], reg_params: Iterable[float], alphas: Iterable[float]) -> list[dict]:
    return [{"rank": r, "reg_param": g, "alpha": a} for r, g, a in itertools.product(ranks, reg_params, alphas)]
