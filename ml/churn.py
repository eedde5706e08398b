"""Churn model: Spark ML pipelines (gradient-boosted trees and logistic regression) and their baselines.

The pipeline starts from raw feature-store columns (see ml.features) and ends in `ChurnProbability`,
which writes P(churn) as the `prediction` column: that is what the MLflow pyfunc flavour of a Spark
model returns, so `mlflow.pyfunc` and `mlflow.spark` scoring see the same number.
"""

from __future__ import annotations

from pyspark import keyword_only
from pyspark.ml import Estimator, Pipeline, Transformer
from pyspark.ml.classification import GBTClassifier, LogisticRegression
from pyspark.ml.feature import OneHotEncoder, SQLTransformer, StandardScaler, StringIndexer, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ml.features import LABEL, WEIGHT, derived_features, derived_sql, fill_sql

PROBABILITY_COL = "prediction"   # P(churn), the pipeline's final output
MODEL_KINDS = ("gbt", "logreg")


class ChurnProbability(Transformer, HasInputCol, HasOutputCol, DefaultParamsReadable, DefaultParamsWritable):
    """Turn the classifier's probability vector into P(class 1) as a double column.

    `oddsCorrection` undoes class weighting: a model trained with weights w1 (positives) and w0
    (negatives) estimates odds inflated by w1/w0, so the true odds are the model's times w0/w1.
    Runs as JVM expressions only (no Python UDF), so executors need no Python code from this repo.
    """

    oddsCorrection = Param(Params._dummy(), "oddsCorrection", "multiply the predicted odds by this",
                           typeConverter=TypeConverters.toFloat)

    @keyword_only
    def __init__(self, *, inputCol: str = "probability", outputCol: str = PROBABILITY_COL,
                 oddsCorrection: float = 1.0):
        super().__init__()
        self._setDefault(inputCol="probability", outputCol=PROBABILITY_COL, oddsCorrection=1.0)
        self._set(**self._input_kwargs)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        p = vector_to_array(F.col(self.getInputCol()))[1]
        c = F.lit(float(self.getOrDefault(self.oddsCorrection)))
        return dataset.withColumn(self.getOutputCol(), (c * p) / (1 - p + c * p))


def add_class_weights(df: DataFrame, label: str = LABEL) -> tuple[DataFrame, float]:
    """Balanced class weights n / (2 n_class) in `class_weight`; returns the odds correction w0/w1."""
    counts = {row[label]: row["n"] for row in df.groupBy(label).agg(F.count(F.lit(1)).alias("n")).collect()}
    n_pos, n_neg = counts.get(1.0, 0), counts.get(0.0, 0)
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"training labels have one class only (churned={n_pos}, active={n_neg}): "
                         "pick an earlier training snapshot or a longer history")
    n = n_pos + n_neg
    w_pos, w_neg = n / (2 * n_pos), n / (2 * n_neg)
    weighted = df.withColumn(WEIGHT, F.when(F.col(label) == 1.0, F.lit(w_pos)).otherwise(F.lit(w_neg)))
    return weighted, w_neg / w_pos


def _feature_stages(numeric: list[str], categorical: list[str], one_hot: bool, *, derived: bool = True,
                    bgnbd=None, horizon_days: float = 90.0) -> tuple[list, list[str]]:
    """Fill nulls -> derived features -> index categories [-> BG/NBD outputs]; returns the stages and the columns
    to assemble."""
    stages: list = [SQLTransformer(statement=fill_sql(numeric, categorical))]
    vector_inputs = [f"f_{c}" for c in numeric]
    if derived and derived_sql(numeric):
        stages.append(SQLTransformer(statement=derived_sql(numeric)))
        vector_inputs += [f"f_{c}" for c in derived_features(numeric)]
    for c in categorical:
        stages.append(StringIndexer(inputCol=f"f_{c}", outputCol=f"idx_{c}", handleInvalid="keep",
                                    stringOrderType="frequencyDesc"))
    if one_hot and categorical:
        stages.append(OneHotEncoder(inputCols=[f"idx_{c}" for c in categorical],
                                    outputCols=[f"oh_{c}" for c in categorical], handleInvalid="keep"))
        vector_inputs += [f"oh_{c}" for c in categorical]
    else:
        vector_inputs += [f"idx_{c}" for c in categorical]
    if bgnbd is not None:
        from ml.value import BGNBD_OUTPUTS, BGNBDValue

        # BG/NBD's P(alive) and expected purchases over the horizon: the dropout posterior a churn model needs,
        # in closed form (a linear model cannot build it from frequency, recency and age)
        stages.append(BGNBDValue.from_model(bgnbd, horizon_days).setOutputCol("bgnbd_value"))
        vector_inputs += BGNBD_OUTPUTS
    return stages, vector_inputs


def build_pipeline(kind: str, numeric: list[str], categorical: list[str], *, odds_correction: float = 1.0,
                   params: dict | None = None, seed: int = 7, bgnbd=None, horizon_days: float = 90.0,
                   derived: bool = True) -> Pipeline:
    """An unfitted churn pipeline: fill nulls -> derived features -> index categories [-> BG/NBD P(alive) and
    expected purchases, with a fitted `bgnbd` (ml.clv.CLVModel)] -> assemble -> classifier -> P(churn)."""
    params = dict(params or {})
    extra = {"derived": derived, "bgnbd": bgnbd, "horizon_days": horizon_days}
    if kind == "gbt":
        stages, inputs = _feature_stages(numeric, categorical, one_hot=False, **extra)
        stages.append(VectorAssembler(inputCols=inputs, outputCol="features", handleInvalid="keep"))
        classifier: Estimator = GBTClassifier(
            featuresCol="features", labelCol=LABEL, weightCol=WEIGHT, predictionCol="predicted_class",
            maxIter=params.pop("maxIter", 60), maxDepth=params.pop("maxDepth", 5),
            stepSize=params.pop("stepSize", 0.1), subsamplingRate=params.pop("subsamplingRate", 0.8),
            maxBins=params.pop("maxBins", 64), seed=seed, **params)
    elif kind == "logreg":
        stages, inputs = _feature_stages(numeric, categorical, one_hot=True, **extra)
        stages.append(VectorAssembler(inputCols=inputs, outputCol="raw_features", handleInvalid="keep"))
        stages.append(StandardScaler(inputCol="raw_features", outputCol="features", withMean=False, withStd=True))
        classifier = LogisticRegression(
            featuresCol="features", labelCol=LABEL, weightCol=WEIGHT, predictionCol="predicted_class",
            maxIter=params.pop("maxIter", 100), regParam=params.pop("regParam", 0.01),
            elasticNetParam=params.pop("elasticNetParam", 0.0), **params)
    else:
        raise ValueError(f"unknown churn model kind {kind!r}; choose one of {MODEL_KINDS}")
    stages.append(classifier)
    stages.append(ChurnProbability(oddsCorrection=odds_correction))
    return Pipeline(stages=stages)


def feature_importances(pipeline_model, transformed: DataFrame) -> list[tuple[str, float]]:
    """(feature, importance) for tree models, |coefficient| on standardised inputs for logistic regression.

    Slot names come from the ML attributes Spark attaches to the assembled vector in `transformed`
    (any output of the pipeline). Tree importances of a feature's slots are summed; for one-hot
    coefficients the largest |coefficient| is kept (a sum would favour features with many categories).
    """
    stages = pipeline_model.stages
    assembler = next(s for s in stages if isinstance(s, VectorAssembler))
    model = stages[-2]
    is_tree = hasattr(model, "featureImportances")
    weights = model.featureImportances.toArray() if is_tree else abs(model.coefficients.toArray())
    names = slot_names(transformed, assembler.getOutputCol(), len(weights))
    totals: dict[str, float] = {}
    for name, w in zip(names, weights, strict=True):
        totals[name] = totals.get(name, 0.0) + float(w) if is_tree else max(totals.get(name, 0.0), float(w))
    return sorted(totals.items(), key=lambda kv: -kv[1])


def slot_names(df: DataFrame, vector_col: str, size: int) -> list[str]:
    """The feature each slot of an assembled vector came from (`f_x` -> x, `oh_c_DE` -> c)."""
    attrs = df.schema[vector_col].metadata.get("ml_attr", {}).get("attrs", {})
    names = [f"slot_{i}" for i in range(size)]
    for group in attrs.values():
        for attr in group:
            names[attr["idx"]] = attr.get("name", names[attr["idx"]])
    out = []
    for name in names:
        for prefix in ("f_", "idx_", "oh_"):
            if name.startswith(prefix):
                name = name[len(prefix):]
                if prefix == "oh_":
                    name = _categorical_base(name)
                break
        out.append(name)
    return out


def _categorical_base(name: str) -> str:
    from ml.features import CATEGORICAL_FEATURES

    return next((c for c in CATEGORICAL_FEATURES if name == c or name.startswith(c + "_")), name)


# --------------------------------------------------------------------------------------------------
# baselines: scores that need no training (higher = more likely to churn)
# --------------------------------------------------------------------------------------------------

def baseline_scores(df: DataFrame) -> DataFrame:
    """Add `baseline_recency` (days since last order) and `baseline_rfm` (15 - R - F - M score)."""
    recency = F.coalesce(F.col("days_since_last_order").cast("double"), F.col("days_since_first_order").cast("double"))
    rfm = F.lit(15.0) - (F.coalesce(F.col("rfm_recency_score"), F.lit(0)) + F.coalesce(F.col("rfm_frequency_score"),
                         F.lit(0)) + F.coalesce(F.col("rfm_monetary_score"), F.lit(0))).cast("double")
    # ties in the RFM score are broken by recency, so the baseline ranks every customer
    return df.withColumns({"baseline_recency": recency,
                           "baseline_rfm": rfm + F.coalesce(recency, F.lit(0.0)) / F.lit(100000.0)})
