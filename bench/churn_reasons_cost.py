"""Time the churn part of scoring with and without the reason codes (ml/reasons.py; docs/models.md, "Reason codes").

Builds c360dev.bench.scoring's synthetic labelled snapshot of N customers, fits the production churn pipelines
(ml.churn.build_pipeline: logistic regression and GBT with 60 trees of depth 5, every feature, no BG/NBD stage), then
scores the buyers of a later snapshot - and a 50-row slice, the test shop's size - writing a scores-shaped Parquet
file, with and without the reason columns, interleaved, `--repeat` times each. Prints wall seconds per run and the
time spent building the explainer (reading the trees through py4j).

    python -m bench.churn_reasons_cost --customers 20000 --repeat 3 [--work-dir /tmp/reasons_bench]
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/reasons_bench"))
    args = parser.parse_args(argv)

    from pyspark.ml import PipelineModel
    from pyspark.sql import functions as F

    from c360dev.bench.scoring import SCORE_DATE, TRAIN_DATE, customer_traits, feature_snapshot
    from ml.churn import add_class_weights, build_pipeline
    from ml.features import (
        CHURN_LABEL,
        POPULATION_FILTER,
        available_features,
        label_columns,
        prepare_features,
    )
    from ml.reasons import REASON_COLUMNS, churn_explainer, with_churn_reasons
    from spark_jobs.common import build_spark

    out = args.work_dir / "out"
    spark = build_spark("churn-reasons-cost", "local[2]")
    traits = customer_traits(args.customers, 7)
    feats, churn, _ = feature_snapshot(traits, args.customers, TRAIN_DATE, 7)
    later, _, _ = feature_snapshot(traits, args.customers, SCORE_DATE, 7)
    labelled = spark.createDataFrame(feats.to_pandas()).join(
        spark.createDataFrame(churn.to_pandas()).select("customer_id", CHURN_LABEL), "customer_id")
    labelled = labelled.where(POPULATION_FILTER)
    numeric, categorical = available_features(labelled.columns)
    train, correction = add_class_weights(
        label_columns(prepare_features(labelled, numeric, categorical), CHURN_LABEL, boolean=True))
    train = train.cache()
    buyers = prepare_features(spark.createDataFrame(later.to_pandas()).where(POPULATION_FILTER), numeric, categorical)
    buyers = buyers.select("customer_id", *numeric, *categorical).cache()
    n_buyers = buyers.count()
    tiny = buyers.limit(50).cache()
    tiny.count()
    print(f"{train.count()} training rows, {len(numeric)} numeric + {len(categorical)} categorical features, "
          f"{n_buyers} buyers to score", flush=True)
    for kind in ("logreg", "gbt"):
        saved = args.work_dir / f"model_{kind}"   # fitted once, reused by later runs of the script
        if saved.exists():
            model = PipelineModel.load(str(saved))
        else:
            params = {"maxIter": 60, "maxDepth": 5} if kind == "gbt" else {"regParam": 0.01}
            model = build_pipeline(kind, numeric, categorical, odds_correction=correction, params=params).fit(train)
            model.write().overwrite().save(str(saved))
        for label, data, n in (("tiny", tiny, 50), ("full", buyers, n_buyers)):
            for rep in range(args.repeat):
                for reasons in (False, True):
                    shutil.rmtree(out, ignore_errors=True)
                    started = time.perf_counter()
                    scored = model.transform(data)
                    cols = ["customer_id", F.col("prediction").alias("churn_probability")]
                    explainer_s = None
                    if reasons:
                        t = time.perf_counter()
                        explainer = churn_explainer(model, scored)
                        explainer_s = time.perf_counter() - t
                        scored, cols = with_churn_reasons(scored, explainer), [*cols, *REASON_COLUMNS]
                    scored.select(*cols).coalesce(1).write.parquet(str(out))
                    print(f"load={os.getloadavg()[0]:.1f} {kind} {label} rows={n} run={rep} reasons={reasons} "
                          f"wall_s={time.perf_counter() - started:.2f}"
                          + (f" explainer_s={explainer_s:.2f}" if reasons else ""), flush=True)
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
