"""Customer value (CLV over the value horizon): two candidate Spark pipelines and a baseline.

Candidates: a GBTRegressor on the feature store (the BG/NBD summary columns among its features), and
BG/NBD x Gamma-Gamma (ml.clv) wrapped as a Spark stage (`BGNBDValue`), so either can be registered
and scored the same way. Baseline: the last-period run rate (net revenue of the last 90 days scaled
to the horizon).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark import keyword_only
from pyspark.ml import Pipeline, PipelineModel, Transformer
from pyspark.ml.feature import SQLTransformer, StringIndexer, VectorAssembler
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasOutputCol
from pyspark.ml.regression import GBTRegressor
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ml.clv import BGNBD, CLVModel, GammaGamma, choose_bgnbd, fit_gamma_gamma
from ml.features import LABEL, derived_features, derived_sql, fill_sql

BGNBD_COLUMNS = ["bgnbd_frequency", "bgnbd_recency_days", "bgnbd_t_days", "bgnbd_monetary_eur"]


BGNBD_OUTPUTS = ["bgnbd_value", "p_alive", "expected_purchases"]
LOG_LABEL = "label_log"   # log(1 + max(label, 0)): what the GBT fits when `log_target`


def build_pipeline(numeric: list[str], categorical: list[str], *, params: dict | None = None, seed: int = 7,
                   bgnbd: CLVModel | None = None, horizon_days: float = 180.0, log_target: bool = False,
                   derived: bool = True) -> Pipeline:
    """fill nulls -> derived features -> index categories [-> BG/NBD outputs] -> assemble -> GBTRegressor -> clamp.

    With a fitted `bgnbd`, its value, P(alive) and expected purchases are features too, and the fitted
    pipeline outputs `p_alive` and `expected_purchases` beside `prediction`.

    `log_target`: the GBT fits log(1 + value) (column `LOG_LABEL`, see `with_log_label`): future value is zero for
    about half the customers and heavy-tailed for the rest, and squared error on the raw value spends the trees on
    the few largest spenders, which ranks the rest poorly. The pipeline then ends in `raw_prediction` (log scale);
    `add_calibration` appends the monotone map back to EUR.
    """
    params = dict(params or {})
    stages: list = [SQLTransformer(statement=fill_sql(numeric, categorical))]
    inputs = [f"f_{c}" for c in numeric]
    if derived and derived_sql(numeric):
        stages.append(SQLTransformer(statement=derived_sql(numeric)))
        inputs += [f"f_{c}" for c in derived_features(numeric)]
    for c in categorical:
        stages.append(StringIndexer(inputCol=f"f_{c}", outputCol=f"idx_{c}", handleInvalid="keep"))
        inputs.append(f"idx_{c}")
    if bgnbd is not None:
        # after the indexers: their fits do not re-run the (Python) BG/NBD stage; GBT caches its own input
        stages.append(BGNBDValue.from_model(bgnbd, horizon_days).setOutputCol("bgnbd_value"))
        inputs += BGNBD_OUTPUTS
    stages.append(VectorAssembler(inputCols=inputs, outputCol="features", handleInvalid="keep"))
    stages.append(GBTRegressor(
        featuresCol="features", labelCol=LOG_LABEL if log_target else LABEL, predictionCol="raw_prediction",
        maxIter=params.pop("maxIter", 60), maxDepth=params.pop("maxDepth", 5),
        stepSize=params.pop("stepSize", 0.1), subsamplingRate=params.pop("subsamplingRate", 0.8),
        maxBins=params.pop("maxBins", 64), lossType=params.pop("lossType", "squared"), seed=seed, **params))
    if not log_target:
        # a value below zero is never the better guess for future spend
        stages.append(SQLTransformer(statement="SELECT *, greatest(raw_prediction, 0.0) AS prediction FROM __THIS__"))
    return Pipeline(stages=stages)


def with_log_label(df: DataFrame) -> DataFrame:
    """Add `LOG_LABEL` = log(1 + max(label, 0)) for a `log_target` pipeline."""
    return df.withColumn(LOG_LABEL, F.log1p(F.greatest(F.col(LABEL), F.lit(0.0))))


def fit_exp_calibration(raw: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, b >= 0) of E[y | raw] = exp(a + b raw), by Poisson maximum likelihood (y >= 0 clipped).

    A monotone map from the log-scale GBT output to EUR: it keeps the GBT's ranking and makes the mean right
    (the Poisson score equations fix sum(prediction) = sum(y) on the fitting rows).
    """
    from scipy.optimize import minimize

    r = np.asarray(raw, dtype=float)
    y = np.maximum(np.asarray(y, dtype=float), 0.0)
    if r.size == 0 or y.sum() <= 0:
        raise ValueError("calibration needs rows with a positive total value")
    centre, spread = float(r.mean()), float(r.std() or 1.0)
    z = (r - centre) / spread

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        eta = np.clip(theta[0] + theta[1] * z, -50, 50)
        mu = np.exp(eta)
        return float(np.mean(mu - y * eta)), np.array([np.mean(mu - y), np.mean((mu - y) * z)])

    res = minimize(loss, np.array([np.log(y.mean()), 1.0]), jac=True, method="L-BFGS-B",
                   bounds=[(None, None), (0.0, None)])
    a0, b0 = map(float, res.x)
    return a0 - b0 * centre / spread, b0 / spread


def add_calibration(model: PipelineModel, a: float, b: float) -> PipelineModel:
    """The fitted log-target pipeline followed by `prediction` = exp(a + b raw_prediction) (EUR, > 0)."""
    statement = (f"SELECT *, exp(least({float(a)!r} + {float(b)!r} * raw_prediction, 50.0)) AS prediction "
                 "FROM __THIS__")
    return PipelineModel(stages=[*model.stages, SQLTransformer(statement=statement)])


def run_rate(df: DataFrame, horizon_days: int) -> DataFrame:
    """Baseline `baseline_run_rate`: net revenue of the last 90 days, scaled to the horizon (>= 0)."""
    last90 = F.coalesce(F.col("net_revenue_eur_90d").cast("double"), F.lit(0.0))
    return df.withColumn("baseline_run_rate", F.greatest(last90 * F.lit(horizon_days / 90.0), F.lit(0.0)))


RUN_RATE_INPUTS = ["net_revenue_eur_90d"]


def run_rate_pipeline(horizon_days: int) -> PipelineModel:
    """The run-rate baseline as a fitted model (`prediction` = `baseline_run_rate`), registered when it is the best
    thing a shop's data supports (spark_jobs.training: a baseline may serve)."""
    statement = (f"SELECT *, greatest(coalesce(CAST(net_revenue_eur_90d AS DOUBLE), 0.0) * {horizon_days / 90.0!r}, "
                 "0.0) AS prediction FROM __THIS__")
    return PipelineModel(stages=[SQLTransformer(statement=statement)])


def bgnbd_summary(pdf: pd.DataFrame) -> dict[str, np.ndarray]:
    """frequency / recency / T / monetary arrays from the feature store's bgnbd_* columns."""
    missing = [c for c in BGNBD_COLUMNS if c not in pdf.columns]
    if missing:
        raise ValueError(f"BG/NBD baseline needs feature-store columns {missing} (docs/feature_store.md)")
    freq = pdf["bgnbd_frequency"].fillna(0).to_numpy(dtype=float)
    rec = pdf["bgnbd_recency_days"].fillna(0).to_numpy(dtype=float)
    T = pdf["bgnbd_t_days"].fillna(0).to_numpy(dtype=float)
    monetary = pdf["bgnbd_monetary_eur"].astype(float).fillna(0).to_numpy(dtype=float)
    rec = np.where(freq > 0, np.minimum(rec, T), 0.0)
    return {"frequency": freq, "recency": rec, "T": T, "monetary": monetary}


def fit_bgnbd_baseline(train_pdf: pd.DataFrame, validation_pdf: pd.DataFrame | None = None, *,
                       horizon_days: float | None = None, label: str | None = None) -> CLVModel:
    """(M)BG/NBD x Gamma-Gamma on the training customers' bgnbd_* summary, unpenalised (ml.clv: scale-free, with a
    guard against degenerate fits). BG/NBD vs MBG/NBD is chosen on `validation_pdf` (held-out customers of the same
    snapshot): with `label` and `horizon_days`, by how well each predicts whether they bought within the horizon
    (label > 0); see ml.clv.choose_bgnbd. The criteria are in `CLVModel.selection`."""
    s = bgnbd_summary(train_pdf)
    val = bought = None
    if validation_pdf is not None and len(validation_pdf):
        val = bgnbd_summary(validation_pdf)
        if label is not None and label in validation_pdf.columns:
            bought = validation_pdf[label].fillna(0).to_numpy(dtype=float) > 0
    bgnbd, scores = choose_bgnbd(s, val, horizon=horizon_days, bought=bought)
    return CLVModel(bgnbd, fit_gamma_gamma(s["frequency"], s["monetary"]), selection=scores)


def predict_bgnbd_parts(model: CLVModel, pdf: pd.DataFrame, horizon_days: float) -> dict[str, np.ndarray]:
    """value, p_alive and expected_purchases over the horizon for the rows of `pdf` (bgnbd_* columns, nulls ok)."""
    s = bgnbd_summary(pdf)
    # a negative mean after returns says nothing about future spend: use the population mean instead
    monetary = np.where(s["monetary"] > 0, s["monetary"], 0.0)
    freq_for_spend = np.where(s["monetary"] > 0, s["frequency"], 0.0)
    purchases = model.bgnbd.expected_purchases(horizon_days, s["frequency"], s["recency"], s["T"])
    return {"value": purchases * model.gamma_gamma.expected_average_value(freq_for_spend, monetary),
            "p_alive": model.bgnbd.p_alive(s["frequency"], s["recency"], s["T"]),
            "expected_purchases": purchases}


def predict_bgnbd(model: CLVModel, pdf: pd.DataFrame, horizon_days: float) -> np.ndarray:
    """Expected value over the horizon (EUR) for the rows of `pdf`."""
    return predict_bgnbd_parts(model, pdf, horizon_days)["value"]


_FLOAT = TypeConverters.toFloat


class BGNBDValue(Transformer, HasOutputCol, DefaultParamsReadable, DefaultParamsWritable):
    """A fitted BG/NBD x Gamma-Gamma model as a Spark stage: bgnbd_* columns -> expected value (`outputCol`,
    default `prediction`), plus `p_alive` and `expected_purchases` over the horizon.

    The parameters are Params, so the stage saves and loads with the pipeline (and with mlflow.spark).
    Scoring runs ml.clv in a pandas UDF: the Python workers need this repository's `ml` package
    (in local mode they have it; on a cluster ship it with --py-files or install it on the nodes).
    """

    r = Param(Params._dummy(), "r", "BG/NBD r", typeConverter=_FLOAT)
    alpha = Param(Params._dummy(), "alpha", "BG/NBD alpha", typeConverter=_FLOAT)
    a = Param(Params._dummy(), "a", "BG/NBD a", typeConverter=_FLOAT)
    b = Param(Params._dummy(), "b", "BG/NBD b", typeConverter=_FLOAT)
    p = Param(Params._dummy(), "p", "Gamma-Gamma p", typeConverter=_FLOAT)
    q = Param(Params._dummy(), "q", "Gamma-Gamma q", typeConverter=_FLOAT)
    v = Param(Params._dummy(), "v", "Gamma-Gamma v", typeConverter=_FLOAT)
    horizonDays = Param(Params._dummy(), "horizonDays", "forecast horizon (days)", typeConverter=_FLOAT)
    # MBG/NBD (one-time buyers may have dropped out); absent in models saved before it existed: plain BG/NBD
    modified = Param(Params._dummy(), "modified", "MBG/NBD instead of BG/NBD", typeConverter=TypeConverters.toBoolean)

    @keyword_only
    def __init__(self, *, r: float = 1.0, alpha: float = 1.0, a: float = 1.0, b: float = 1.0, p: float = 1.0,
                 q: float = 2.0, v: float = 1.0, horizonDays: float = 180.0, modified: bool = False,
                 outputCol: str = "prediction"):
        super().__init__()
        self._setDefault(r=1.0, alpha=1.0, a=1.0, b=1.0, p=1.0, q=2.0, v=1.0, horizonDays=180.0, modified=False,
                         outputCol="prediction")
        self._set(**self._input_kwargs)

    def setOutputCol(self, value: str) -> BGNBDValue:
        return self._set(outputCol=value)

    @classmethod
    def from_model(cls, model: CLVModel, horizon_days: float) -> BGNBDValue:
        return cls(r=model.bgnbd.r, alpha=model.bgnbd.alpha, a=model.bgnbd.a, b=model.bgnbd.b,
                   p=model.gamma_gamma.p, q=model.gamma_gamma.q, v=model.gamma_gamma.v, horizonDays=horizon_days,
                   modified=model.bgnbd.modified)

    def clv_model(self) -> CLVModel:
        get = self.getOrDefault
        return CLVModel(BGNBD(get(self.r), get(self.alpha), get(self.a), get(self.b), get(self.modified)),
                        GammaGamma(get(self.p), get(self.q), get(self.v)))

    def _transform(self, dataset: DataFrame) -> DataFrame:
        _local_workers_use_this_python(dataset)
        model = self.clv_model()
        horizon = float(self.getOrDefault(self.horizonDays))

        @F.pandas_udf("value double, p_alive double, expected_purchases double")
        def bgnbd(freq: pd.Series, rec: pd.Series, t: pd.Series, monetary: pd.Series) -> pd.DataFrame:
            frame = pd.DataFrame({"bgnbd_frequency": freq, "bgnbd_recency_days": rec, "bgnbd_t_days": t,
                                  "bgnbd_monetary_eur": monetary})
            return pd.DataFrame(predict_bgnbd_parts(model, frame, horizon))

        out = dataset.withColumn("_bgnbd", bgnbd(*[F.col(c).cast("double") for c in BGNBD_COLUMNS]))
        return out.withColumns({self.getOutputCol(): F.col("_bgnbd.value"), "p_alive": F.col("_bgnbd.p_alive"),
                                "expected_purchases": F.col("_bgnbd.expected_purchases")}).drop("_bgnbd")


def _local_workers_use_this_python(dataset: DataFrame) -> None:
    """In local mode, run Python workers with this interpreter (it has numpy/scipy/pandas and `ml`).

    Without PYSPARK_PYTHON, Spark starts workers with whatever `python3` is on the PATH, which outside an
    activated virtualenv (cron, Airflow, `make`, MLflow's pyfunc session) lacks the packages.
    """
    import os
    import sys

    sc = dataset.sparkSession.sparkContext
    if sc.master.startswith("local") and not os.environ.get("PYSPARK_PYTHON"):
        sc.pythonExec = sys.executable


def bgnbd_pipeline(model: CLVModel, horizon_days: float) -> PipelineModel:
    """A fitted PipelineModel holding only the BG/NBD stage (registered like any other CLV model)."""
    return PipelineModel(stages=[BGNBDValue.from_model(model, horizon_days)])
