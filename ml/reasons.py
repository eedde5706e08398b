"""Reason codes: the features that push one customer's churn risk up, read from the served churn model itself.

Both churn model kinds are additive in log-odds, so each feature gets an exact share of the customer's log-odds
above a reference (method and choice: docs/models.md, "Reason codes"):

* logistic regression: coefficient x standardised distance from the training mean, coef_j * (x_j - mean_j) / std_j,
  with the mean and std of the pipeline's own StandardScaler (the model sees x / std; centring on the mean makes
  "average" contribute nothing, so a reason means "differs from the average customer in a way that raises risk");
* gradient-boosted trees: per-tree path contributions (Saabas): every split on the customer's path moves the tree's
  output from the node's value to the child's; that move is credited to the split's feature. Summed over the trees
  (x 2 x tree weight: Spark's GBT log-odds are twice the margin), it is the customer's log-odds above the average
  training row's.

In both cases bias + sum(contributions) = the classifier's log-odds for the row (the odds correction of
ml.churn.ChurnProbability only shifts every row by the same constant). The top reasons are the features with the
largest positive contributions; a customer whose risk no feature raises has fewer (or no) reasons.

The numeric part (`ChurnExplainer`) is numpy only and unit-testable without Spark; `churn_explainer` reads one from
a fitted churn PipelineModel and `with_churn_reasons` adds the reason columns to a transformed DataFrame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TOP_REASONS = 3
REASON_COLUMNS = [f"churn_reason_{i}" for i in range(1, TOP_REASONS + 1)]
_EPS = 1e-9  # a contribution this small is rounding, not a reason


@dataclass(frozen=True)
class Tree:
    """One regression tree in arrays (node 0 = root). feature < 0 marks a leaf; a continuous split sends
    x <= threshold left, a categorical one sends x in left_categories left (Spark's rules)."""

    feature: np.ndarray          # int, per node
    threshold: np.ndarray        # float, per node (continuous splits)
    left_categories: tuple       # per node: frozenset of category indices going left, or None (continuous)
    left: np.ndarray             # int child index, per node
    right: np.ndarray
    value: np.ndarray            # float: the node's prediction (mean target of the training rows reaching it)


@dataclass(frozen=True)
class ChurnExplainer:
    """Per-feature log-odds contributions of a linear or tree-ensemble churn classifier over its input vector.

    slot_names: what each vector slot is ("days_since_last_order", or "country=DE" for a one-hot slot, or
    "country" for an indexed category); features: the reported features, each made of one or more slots.
    """

    kind: str                                  # "linear" | "trees"
    vector_col: str                            # the DataFrame column holding the vector the arrays index
    slot_names: list[str]
    features: list[str]
    slot_feature: np.ndarray                   # int, per slot: index into `features`
    bias: float                                # log-odds of the reference row (training mean / root values)
    weights: np.ndarray | None = None          # linear: coef_j / std_j per slot
    reference: np.ndarray | None = None        # linear: the training mean per slot
    trees: list[Tree] = field(default_factory=list)
    tree_weights: np.ndarray | None = None     # trees: the log-odds scale of each tree's output
    category_labels: dict[int, list[str]] = field(default_factory=dict)  # slot of an indexed category -> labels

    # ------------------------------------------------------------------------------------------ numbers
    def slot_contributions(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(contribution, toward_high) per row and slot, in log-odds. toward_high > 0 says the contribution comes
        from the value being high (above the mean; above the trees' thresholds), < 0 from it being low."""
        x = np.asarray(x, dtype=float)
        if x.ndim != 2 or x.shape[1] != len(self.slot_names):
            raise ValueError(f"expected rows of {len(self.slot_names)} values ({self.vector_col}), got {x.shape}")
        if self.kind == "linear":
            distance = x - self.reference
            contrib = distance * self.weights
            toward_high = contrib * np.sign(distance)
        else:
            contrib, toward_high = _tree_contributions(x, self.trees, self.tree_weights)
        # a NaN slot (assembler handleInvalid=keep) explains nothing rather than poisoning the row
        return np.nan_to_num(contrib), np.nan_to_num(toward_high)

    def contributions(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(contribution, toward_high) per row and feature: the slots of a feature (one-hot) summed."""
        contrib, toward_high = self.slot_contributions(x)
        groups = np.zeros((len(self.slot_names), len(self.features)))
        groups[np.arange(len(self.slot_names)), self.slot_feature] = 1.0
        return contrib @ groups, toward_high @ groups

    # ------------------------------------------------------------------------------------------ words
    def reasons(self, x: np.ndarray, k: int = TOP_REASONS) -> list[list[str | None]]:
        """Per row, the k features that raise the risk most, in words ("days_since_last_order high",
        "country = DE"), None-padded when fewer than k features raise it."""
        return self.reason_array(x, k).tolist()

    def reason_array(self, x: np.ndarray, k: int = TOP_REASONS) -> np.ndarray:
        """`reasons` as an (n, k) object array (what the scoring UDF writes): worded per feature, not per row."""
        x = np.asarray(x, dtype=float)
        contrib, toward_high = self.contributions(x)
        # largest first; equal contributions in feature-name order, so reruns give the same words
        by_name = np.argsort(np.array(self.features), kind="stable")
        order = by_name[np.argsort(-contrib[:, by_name], axis=1, kind="stable")][:, :k]
        rows = np.arange(len(x))
        out = np.full((len(x), order.shape[1]), None, dtype=object)
        for j in range(order.shape[1]):
            picked = order[:, j]
            raises = contrib[rows, picked] > _EPS
            for f in np.unique(picked[raises]):
                at = rows[raises & (picked == f)]
                out[at, j] = self._words(int(f), x[at], toward_high[at, f])
        # positions fill from the first: a feature that does not raise the risk is never followed by one that does
        return np.pad(out, ((0, 0), (0, k - out.shape[1])), constant_values=None) if out.shape[1] < k else out

    def _words(self, f: int, x: np.ndarray, toward_high: np.ndarray) -> np.ndarray:
        """Feature f in words for the rows `x`: "<name> high|low", or "<name> = <the row's category>"."""
        name = self.features[f]
        slots = np.flatnonzero(self.slot_feature == f)
        if len(slots) == 1 and int(slots[0]) in self.category_labels:      # an indexed category (trees)
            labels = np.array([*self.category_labels[int(slots[0])], "other"], dtype=object)
            idx = np.nan_to_num(x[:, slots[0]], nan=-1).astype(int)
            idx = np.where((idx >= 0) & (idx < len(labels) - 1), idx, len(labels) - 1)
            return np.array([f"{name} = {v}" for v in labels], dtype=object)[idx]
        if len(slots) > 1 or "=" in self.slot_names[slots[0]]:             # one-hot slots (linear)
            values = np.array([*(self.slot_names[s].split("=", 1)[-1] for s in slots), "other"], dtype=object)
            hot = x[:, slots] == 1.0
            idx = np.where(hot.any(axis=1), hot.argmax(axis=1), len(slots))
            return np.array([f"{name} = {v}" for v in values], dtype=object)[idx]
        return np.where(toward_high >= 0, f"{name} high", f"{name} low").astype(object)


def _tree_contributions(x: np.ndarray, trees: list[Tree], tree_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Saabas path contributions: per node, the rows reaching it are split and each child's rows are credited
    weight x (child value - node value) on the node's feature."""
    n, d = x.shape
    contrib = np.zeros((n, d))
    toward_high = np.zeros((n, d))
    for tree, w in zip(trees, tree_weights, strict=True):
        pending = [(0, np.arange(n))]
        while pending:
            node, rows = pending.pop()
            f = int(tree.feature[node])
            if f < 0 or len(rows) == 0:
                continue
            values = x[rows, f]
            cats = tree.left_categories[node]
            go_left = (values <= tree.threshold[node]) if cats is None else np.isin(values, list(cats))
            for child, mask, side in ((int(tree.left[node]), go_left, -1.0), (int(tree.right[node]), ~go_left, 1.0)):
                delta = w * (tree.value[child] - tree.value[node])
                contrib[rows[mask], f] += delta
                if cats is None:  # left of a threshold = low, right = high; a category has no direction
                    toward_high[rows[mask], f] += side * delta
                pending.append((child, rows[mask]))
    return contrib, toward_high


# ---------------------------------------------------------------------------------------------------------------
# from a fitted Spark pipeline (ml.churn.build_pipeline) - driver side
# ---------------------------------------------------------------------------------------------------------------

def churn_explainer(pipeline_model, transformed) -> ChurnExplainer | None:
    """The explainer of a fitted churn PipelineModel, or None when its classifier is neither a logistic regression
    nor a GBT (a hand-written pipeline): scoring then writes null reasons. `transformed` is the pipeline's output
    (only its schema is read: the ML attributes naming the vector's slots)."""
    from pyspark.ml.classification import GBTClassificationModel, LogisticRegressionModel
    from pyspark.ml.feature import StandardScalerModel, StringIndexerModel

    stages = list(getattr(pipeline_model, "stages", []))
    classifier = next((s for s in reversed(stages)
                       if isinstance(s, LogisticRegressionModel | GBTClassificationModel)), None)
    if classifier is None or getattr(classifier, "numClasses", 2) != 2:
        return None
    vector_col = classifier.getFeaturesCol()
    if isinstance(classifier, LogisticRegressionModel):
        coef = classifier.coefficients.toArray()
        scaler = next((s for s in stages if isinstance(s, StandardScalerModel) and s.getOutputCol() == vector_col),
                      None)
        if scaler is not None:  # explain the unscaled assembled vector: coef / std per raw unit, the mean as reference
            vector_col = scaler.getInputCol()
            mean, std = scaler.mean.toArray(), scaler.std.toArray()
            # Spark's scaler writes 0 for a constant slot: it cannot move the risk
            weights = np.divide(coef, std, out=np.zeros_like(coef), where=std > 0) if scaler.getWithStd() else coef
            # without centring the model sees x / std, so the reference row's log-odds include weights . mean
            bias = float(classifier.intercept) + (0.0 if scaler.getWithMean() else float(weights @ mean))
        else:
            weights, mean, bias = coef, np.zeros_like(coef), float(classifier.intercept)
        slot_names = _slot_names(transformed, vector_col, len(coef), {})
        features, slot_feature = _group(slot_names)
        return ChurnExplainer("linear", vector_col, slot_names, features, slot_feature, bias,
                              weights=weights, reference=mean)
    trees = [_read_tree(t._java_obj.rootNode()) for t in classifier.trees]
    # Spark's GBT (log loss) gives P(1) = 1 / (1 + exp(-2 margin)), margin = sum(weight x tree): log-odds = 2 margin
    tree_weights = 2.0 * np.asarray(classifier.treeWeights, dtype=float)
    indexers = {s.getOutputCol(): s.labelsArray[0] for s in stages if isinstance(s, StringIndexerModel)}
    size = classifier.numFeatures
    labels: dict[int, list[str]] = {}
    slot_names = _slot_names(transformed, vector_col, size, indexers, labels)
    features, slot_feature = _group(slot_names)
    bias = float(sum(w * t.value[0] for t, w in zip(trees, tree_weights, strict=True)))
    return ChurnExplainer("trees", vector_col, slot_names, features, slot_feature, bias, trees=trees,
                          tree_weights=tree_weights, category_labels=labels)


def _read_tree(root) -> Tree:
    """A Spark ml.tree.Node (through py4j) as arrays, in pre-order."""
    feature, threshold, cats, left, right, value = [], [], [], [], [], []

    def visit(node) -> int:
        i = len(value)
        for seq, default in ((feature, -1), (threshold, np.nan), (cats, None), (left, -1), (right, -1)):
            seq.append(default)
        value.append(float(node.prediction()))
        if node.getClass().getSimpleName() == "InternalNode":
            split = node.split()
            feature[i] = int(split.featureIndex())
            if split.getClass().getSimpleName() == "CategoricalSplit":
                cats[i] = frozenset(float(c) for c in split.leftCategories())
            else:
                threshold[i] = float(split.threshold())
            left[i] = visit(node.leftChild())
            right[i] = visit(node.rightChild())
        return i

    visit(root)
    return Tree(np.array(feature), np.array(threshold), tuple(cats), np.array(left), np.array(right),
                np.array(value))


def _slot_names(df, vector_col: str, size: int, indexers: dict[str, list[str]],
                labels: dict[int, list[str]] | None = None) -> list[str]:
    """Slot -> "feature" (f_x, idx_c, BG/NBD outputs) or "feature=category" (oh_c_DE), from the ML attributes Spark
    attaches to the assembled vector. Fills `labels` with the category labels of indexed-category slots."""
    from ml.features import CATEGORICAL_FEATURES

    attrs = df.schema[vector_col].metadata.get("ml_attr", {}).get("attrs", {})
    raw = [f"slot_{i}" for i in range(size)]
    for group in attrs.values():
        for attr in group:
            raw[attr["idx"]] = attr.get("name", raw[attr["idx"]])
    out = []
    for i, name in enumerate(raw):
        if name.startswith("f_"):
            name = name[2:]
        elif name.startswith("idx_"):
            if labels is not None and name in indexers:
                labels[i] = list(indexers[name])
            name = name[4:]
        elif name.startswith("oh_"):
            rest = name[3:]
            base = next((c for c in CATEGORICAL_FEATURES if rest.startswith(c + "_")), None)
            name = f"{base}={rest[len(base) + 1:]}" if base else rest
        out.append(name)
    return out


def _group(slot_names: list[str]) -> tuple[list[str], np.ndarray]:
    """The reported features (one-hot slots of a category become one) and each slot's feature index."""
    features: list[str] = []
    index: dict[str, int] = {}
    slot_feature = []
    for name in slot_names:
        base = name.split("=", 1)[0]
        if base not in index:
            index[base] = len(features)
            features.append(base)
        slot_feature.append(index[base])
    return features, np.array(slot_feature, dtype=int)


# ---------------------------------------------------------------------------------------------------------------
# on a DataFrame - the reason columns, computed next to the churn probability
# ---------------------------------------------------------------------------------------------------------------

def with_churn_reasons(transformed, explainer: ChurnExplainer | None, k: int = TOP_REASONS):
    """`transformed` (the churn pipeline's output) with churn_reason_1..k (strings, null when fewer features raise
    the risk, all null without an explainer). Runs in a pandas UDF: Python workers need this repository's `ml`
    package, as for the CLV model (ml.value.BGNBDValue)."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    from ml.value import _local_workers_use_this_python

    names = [f"churn_reason_{i}" for i in range(1, k + 1)]
    if explainer is None:
        return transformed.withColumns({n: F.lit(None).cast("string") for n in names})
    _local_workers_use_this_python(transformed)

    @F.pandas_udf(", ".join(f"{n} string" for n in names))
    def reasons(vectors):
        import pandas as pd

        rows = np.vstack(vectors.to_numpy()) if len(vectors) else np.zeros((0, len(explainer.slot_names)))
        return pd.DataFrame(explainer.reason_array(rows, k), columns=names, dtype=object)

    out = transformed.withColumn("_churn_reasons", reasons(vector_to_array(F.col(explainer.vector_col))))
    return out.withColumns({n: F.col(f"_churn_reasons.{n}") for n in names}).drop("_churn_reasons")
