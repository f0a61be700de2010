"""Training-serving skew: how far a feature's serving distribution has moved from its training one.

A model is only as good as the match between the rows it was trained on and the rows it scores.
This module compares a training (reference) sample of each feature with a serving sample and
reports the Population Stability Index, with the two-sample Kolmogorov-Smirnov statistic as
supporting evidence for continuous features:

    PSI = sum_i (P_i - Q_i) * ln(P_i / Q_i)     P = serving, Q = training proportion in bin i
    D   = sup_x |F_train(x) - F_serve(x)|       (scipy.stats.ks_2samp, with its p-value)

PSI < 0.1 is no significant shift, 0.1 <= PSI < 0.25 a moderate one ("warn"), PSI >= 0.25 a
significant one ("fail"). Features are numeric; nulls count as a bin of their own. Pure functions:
no Dagster, MLflow or Feast, so a notebook or a test can call them on plain pandas data.

Keyed features. A feature a row gets through a key of another entity (the activity of the user's
favourite category) has one value per key at an as-of time: its serving sample is as many values
as there are keys (eight categories), repeated over thousands of rows. PSI over value bins cannot
measure that. A one-day snapshot fills a handful of point masses, so against value bins from
training it leaves most bins empty; and when the training sample is also one as-of time, each bin
holds one key's value, so a few-percent move that reorders two keys counts as a full shift. On a
healthy 30-day demo two consecutive days scored PSI 1 to 3 on the category features. Such a
feature is therefore compared at the grain it varies at (`keyed_feature_drift`). PSI is taken over
the keys, which is how the rows spread over the values' sources (a key that disappears or takes
over moves it). KS is taken on the keys' values, one per key and side; with eight values its exact
p-value is the right test, and its verdict counts (warns below KS_P_WARN, fails below KS_P_FAIL).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:  # pandas loads where drift is measured: every Dagster process imports this module
    import pandas as pd

    ArrayLike = np.ndarray | pd.Series | Sequence[float | None]

PSI_WARN = 0.1
PSI_FAIL = 0.25
# Floor for a bin's proportion. ln(P/Q) is infinite when one side has an empty bin, and that is
# exactly the case that matters (a value training never saw, a feature suddenly null). Flooring at
# 1e-4 and renormalising keeps PSI finite while such a bin still adds about 0.5 * ln(0.5 / 1e-4) ~ 4
# for half the rows, far above PSI_FAIL. Bins empty on both sides get equal floors and add nothing.
EPSILON = 1e-4
# Keyed features: verdict of the key-grain KS test, whose exact p-value is calibrated at a few keys.
# With K keys a side the smallest p-value is 2 / C(2K, K): 8 keys are needed for 7 of 8 moved
# (p = 0.0025) to fail and 6 of 8 (p = 0.019) to warn. With 4 keys or fewer KS can never fail.
KS_P_WARN = 0.05
KS_P_FAIL = 0.01

Status = Literal["ok", "warn", "fail"]
_RANK: dict[str, int] = {"ok": 0, "warn": 1, "fail": 2}


def _floats(values: ArrayLike) -> np.ndarray:
    # Through pandas so None, pd.NA and nullable integer columns all become NaN.
    import pandas as pd

    return pd.Series(values).astype("float64").to_numpy()


def bin_edges(training: ArrayLike, bins: int = 10) -> np.ndarray:
    """Bin edges from the training sample alone, outer edges -inf/+inf; nulls are not binned here.

    With at most `bins` distinct values (counts such as purchases_7d) each value gets its own bin,
    split at midpoints; otherwise the edges are the training quantiles, deduplicated because ties
    repeat them. Open outer edges put serving values outside the training range into the end bins.
    """
    x = _floats(training)
    x = x[~np.isnan(x)]
    distinct = np.unique(x)
    if len(distinct) <= bins:
        inner = (distinct[1:] + distinct[:-1]) / 2
    else:
        inner = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1))[1:-1])
    return np.concatenate([[-np.inf], inner, [np.inf]])


def _proportions(values: ArrayLike, edges: np.ndarray) -> np.ndarray:
    """Share of `values` per bin [edges[i], edges[i+1]), and last the share of nulls."""
    x = _floats(values)
    if len(x) == 0:
        raise ValueError("cannot measure drift on an empty sample")
    null = np.isnan(x)
    counts = np.bincount(
        np.searchsorted(edges, x[~null], side="right") - 1, minlength=len(edges) - 1
    )
    return np.append(counts, null.sum()) / len(x)


def psi(training: ArrayLike, serving: ArrayLike, bins: int = 10) -> float:
    """Population Stability Index of `serving` against `training`, on bins defined by `training`."""
    edges = bin_edges(training, bins)
    p, q = (np.maximum(_proportions(s, edges), EPSILON) for s in (serving, training))
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum((p - q) * np.log(p / q)))


def ks(training: ArrayLike, serving: ArrayLike) -> tuple[float, float]:
    """Two-sample KS (statistic, p-value) on non-null values; (nan, nan) if a side has none."""
    a, b = _floats(training), _floats(serving)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if len(a) == 0 or len(b) == 0:
        return math.nan, math.nan
    from scipy import stats

    result = stats.ks_2samp(a, b)
    return float(result.statistic), float(result.pvalue)


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    psi: float  # over value bins; for a keyed feature, over its keys (see keyed_feature_drift)
    ks_statistic: float | None  # None for discrete features, where KS assumes continuity it lacks
    ks_pvalue: float | None
    status: Status
    key: str | None = None  # the row column that keys this feature's values, if it is keyed


def psi_status(value: float) -> Status:
    return "fail" if value >= PSI_FAIL else "warn" if value >= PSI_WARN else "ok"


def ks_status(pvalue: float | None) -> Status:
    """Verdict of a key-grain KS test; "ok" when it could not be computed (no values on a side)."""
    if pvalue is None or math.isnan(pvalue):
        return "ok"
    return "fail" if pvalue < KS_P_FAIL else "warn" if pvalue < KS_P_WARN else "ok"


def _key_labels(frame: pd.DataFrame, feature: str, key: str) -> pd.Series:
    # A row's bin is its key, or null when the row has no key or its key has no value.
    keys = frame[key].astype("object").where(frame[key].notna() & (frame[key] != ""), None)
    return keys.where(frame[feature].notna(), None)


def key_values(frame: pd.DataFrame, feature: str, key: str) -> pd.Series:
    """The feature's non-null value per key in `frame` (one as-of time), indexed by key."""
    import pandas as pd

    labels = _key_labels(frame, feature, key)
    rows = pd.DataFrame({"key": labels, "value": _floats(frame[feature])}).dropna()
    return rows.drop_duplicates().set_index("key")["value"].sort_index()


def keyed_feature_drift(
    training: pd.DataFrame, serving: pd.DataFrame, feature: str, key: str
) -> FeatureDrift:
    """Drift of a feature whose value is set by the row's `key` (both frames: one as-of time each).

    PSI over the keys: bins are the keys of either side plus null (no key, or a key without a
    value), so it is the shift in how rows spread over the values' sources. KS two-sample on the
    values, one per (key, value) pair and side, with scipy's exact p-value at these sizes. The status
    is the worse of the PSI verdict and the KS verdict (`ks_status`).
    """
    t, s = _key_labels(training, feature, key), _key_labels(serving, feature, key)
    if len(t) == 0 or len(s) == 0:
        raise ValueError("cannot measure drift on an empty sample")
    bins = sorted(set(t.dropna()) | set(s.dropna()))
    shares = [
        np.append(side.value_counts().reindex(bins, fill_value=0).to_numpy(), side.isna().sum())
        / len(side)
        for side in (s, t)
    ]
    p, q = (np.maximum(x, EPSILON) for x in shares)
    p, q = p / p.sum(), q / q.sum()
    value = float(np.sum((p - q) * np.log(p / q)))
    stat, pvalue = ks(
        key_values(training, feature, key).to_numpy(), key_values(serving, feature, key).to_numpy()
    )
    status = max(psi_status(value), ks_status(pvalue), key=_RANK.__getitem__)
    return FeatureDrift(feature, value, stat, pvalue, status, key)


def feature_drift(
    training: pd.DataFrame,
    serving: pd.DataFrame,
    features: list[str],
    continuous: set[str],
    bins: int = 10,
    keys: dict[str, str] | None = None,
) -> list[FeatureDrift]:
    """PSI for every feature, KS as well for those in `continuous`; status from PSI alone.

    KS does not set the status: with thousands of rows its p-value is tiny for shifts too small to
    matter to a model, so failing on it would cry wolf. PSI measures the size of the shift instead.
    Features in `keys` (feature -> the row column keying its values) are compared by key instead,
    where the sample is a few values and KS does count (`keyed_feature_drift`).
    """
    keys = keys or {}
    report = []
    for name in features:
        if name in keys:
            report.append(keyed_feature_drift(training, serving, name, keys[name]))
            continue
        value = psi(training[name], serving[name], bins)
        stat, pvalue = ks(training[name], serving[name]) if name in continuous else (None, None)
        report.append(FeatureDrift(name, value, stat, pvalue, psi_status(value)))
    return report


def worst_status(report: list[FeatureDrift]) -> Status:
    """The most severe status in the report, "ok" for an empty one."""
    return max((d.status for d in report), key=_RANK.__getitem__, default="ok")


def _bin_labels(training: np.ndarray, edges: np.ndarray) -> list[str]:
    # Label a bin by the training values in it: one value for a discrete bin, a range otherwise.
    x = training[~np.isnan(training)]
    index = np.searchsorted(edges, x, side="right") - 1
    labels = []
    for i in range(len(edges) - 1):
        inside = x[index == i]
        lo, hi = (inside.min(), inside.max()) if len(inside) else (edges[i], edges[i + 1])
        labels.append(f"{lo:.3g}" if lo == hi else f"{lo:.3g}–{hi:.3g}")
    return labels + ["null"]


def _keyed_panel(ax, training: pd.DataFrame, serving: pd.DataFrame, drift: FeatureDrift) -> None:
    # A keyed feature is drawn as it is compared: its value per key, training against serving.
    import pandas as pd

    values = pd.concat(
        {
            "training": key_values(training, drift.feature, drift.key),
            "serving": key_values(serving, drift.feature, drift.key),
        },
        axis=1,
    )
    x = np.arange(len(values))
    ax.bar(x - 0.2, values["training"].fillna(0), width=0.4, label="training")
    ax.bar(x + 0.2, values["serving"].fillna(0), width=0.4, label="serving")
    ax.set_xticks(x, [str(k) for k in values.index], rotation=60, fontsize=6)
    pvalue = (
        "n/a"
        if drift.ks_pvalue is None or math.isnan(drift.ks_pvalue)
        else f"{drift.ks_pvalue:.2g}"
    )
    ax.set_title(
        f"{drift.feature} by {drift.key}: PSI {drift.psi:.3f}, KS p {pvalue} ({drift.status})",
        fontsize=8,
    )
    ax.legend(fontsize=6)


def drift_chart(
    training: pd.DataFrame,
    serving: pd.DataFrame,
    report: list[FeatureDrift],
    path: str | Path,
    bins: int = 10,
) -> Path:
    """One PNG with a panel per reported feature: training vs serving share per (training) bin, or
    for a keyed feature, its value per key on each side."""
    columns = min(3, max(1, len(report)))
    rows = max(1, math.ceil(len(report) / columns))
    from matplotlib.figure import (
        Figure,
    )  # a bare Figure needs no GUI backend, so this is safe on a server

    figure = Figure(figsize=(4.5 * columns, 3.2 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, drift in zip(axes, report):
        if drift.key is not None:
            _keyed_panel(ax, training, serving, drift)
            continue
        edges = bin_edges(training[drift.feature], bins)
        x = np.arange(len(edges))  # the bins plus the null bin
        ax.bar(x - 0.2, _proportions(training[drift.feature], edges), width=0.4, label="training")
        ax.bar(x + 0.2, _proportions(serving[drift.feature], edges), width=0.4, label="serving")
        ax.set_xticks(
            x, _bin_labels(_floats(training[drift.feature]), edges), rotation=60, fontsize=6
        )
        ax.set_title(f"{drift.feature}: PSI {drift.psi:.3f} ({drift.status})", fontsize=9)
        ax.legend(fontsize=6)
    for ax in axes[len(report) :]:
        ax.set_visible(False)
    path = Path(path)
    figure.savefig(path, format="png", dpi=100)
    return path
