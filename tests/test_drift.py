"""Training-serving drift: PSI and KS against answers worked out by hand or computed independently."""

import math

import numpy as np
import pandas as pd
import pytest

from lakehouse.ml.drift import (
    KS_P_FAIL,
    KS_P_WARN,
    PSI_FAIL,
    PSI_WARN,
    FeatureDrift,
    bin_edges,
    drift_chart,
    feature_drift,
    keyed_feature_drift,
    ks,
    ks_status,
    psi,
    worst_status,
)
from lakehouse.ml.serving_skew import newest_prediction_time

N = 20_000


def _frame(seed, purchases_lambda=1.0, seconds_scale=1.0, score_shift=0.0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "purchases_7d": rng.poisson(purchases_lambda, N),
            "session_seconds": 60 * seconds_scale * rng.lognormal(0.0, 0.5, N),
            "score": rng.normal(score_shift, 1.0, N),
        }
    )


FEATURES = ["purchases_7d", "session_seconds", "score"]
CONTINUOUS = {"session_seconds", "score"}


def _status(report):
    return {d.feature: d.status for d in report}


def test_psi_matches_hand_computation():
    # Training 50/30/20 % over {0, 1, 2}, serving 40/30/30 %; no empty value bin on either side.
    training = [0] * 50 + [1] * 30 + [2] * 20
    serving = [0] * 40 + [1] * 30 + [2] * 30
    expected = (
        (0.4 - 0.5) * math.log(0.4 / 0.5)
        + (0.3 - 0.3) * math.log(0.3 / 0.3)
        + (0.3 - 0.2) * math.log(0.3 / 0.2)
    )
    assert expected == pytest.approx(0.0628609, abs=1e-7)
    # The (empty on both sides) null bin is floored to 1e-4 on both sides: it adds nothing, and the
    # renormalisation divides every proportion, hence PSI, by 1.0001.
    assert psi(training, serving) == pytest.approx(expected / 1.0001, rel=1e-9)


def test_discrete_feature_gets_one_bin_per_value():
    assert bin_edges(np.array([0, 0, 1, 2, 2, 2])).tolist() == [-np.inf, 0.5, 1.5, np.inf]


def test_identical_samples_have_zero_psi_and_are_ok():
    sample = _frame(1)
    report = feature_drift(sample, sample.copy(), FEATURES, CONTINUOUS)
    assert [d.psi for d in report] == pytest.approx([0.0, 0.0, 0.0], abs=1e-12)
    assert worst_status(report) == "ok"


def test_bin_empty_on_serving_side_is_finite_and_fails():
    # Value 0 is half the training rows and never served: P_0 floors at 1e-4 instead of ln(0).
    value = psi([0] * 50 + [1] * 50, [1] * 100)
    eps = 1e-4 / 1.0002  # floor on the served 0 bin and the null bins, after renormalising
    p0, p1, q = eps, 1 / 1.0002, 0.5 / 1.0001
    expected = (
        (p0 - q) * math.log(p0 / q)
        + (p1 - q) * math.log(p1 / q)
        + (eps - 1e-4 / 1.0001) * math.log(eps / (1e-4 / 1.0001))
    )
    assert math.isfinite(value) and value == pytest.approx(expected, rel=1e-9)
    assert value > PSI_FAIL


def test_serving_values_outside_training_range_land_in_end_bins():
    # Training ranges over 0..100; serving far outside it still counts, in the end bins, and fails.
    training = np.arange(101, dtype=float)
    assert math.isfinite(psi(training, np.full(50, 1e6)))
    assert psi(training, np.full(50, 1e6)) > PSI_FAIL
    assert psi(training, np.full(50, -1e6)) > PSI_FAIL


def test_serving_half_null_fails():
    rng = np.random.default_rng(7)
    training = pd.DataFrame({"score": rng.normal(size=1000)})
    serving = pd.DataFrame(
        {"score": np.where(np.arange(1000) % 2 == 0, rng.normal(size=1000), np.nan)}
    )
    [drift] = feature_drift(training, serving, ["score"], {"score"})
    assert math.isfinite(drift.psi) and drift.psi > PSI_FAIL and drift.status == "fail"
    # Halving every value bin alone adds sum(q/2 * ln 2) = ln(2)/2; the null bin adds far more.
    assert drift.psi > math.log(2) / 2 + 1


def test_nullable_integer_column_with_nulls():
    training = pd.Series([0, 1, 2, 1, 0], dtype="Int64")
    serving = pd.Series([0, 1, None, None, None], dtype="Int64")
    assert psi(training, serving) > PSI_FAIL
    assert psi(training, training) == pytest.approx(0.0, abs=1e-12)


def test_same_distribution_different_seed_is_ok():
    report = feature_drift(_frame(1), _frame(2), FEATURES, CONTINUOUS)
    assert _status(report) == dict.fromkeys(FEATURES, "ok")
    assert max(d.psi for d in report) < 0.01


def test_large_shifts_fail():
    report = feature_drift(
        _frame(1),
        _frame(2, purchases_lambda=2.0, seconds_scale=1.5, score_shift=1.0),
        FEATURES,
        CONTINUOUS,
    )
    assert _status(report) == dict.fromkeys(FEATURES, "fail")
    assert worst_status(report) == "fail"


def test_moderate_shift_warns():
    # A 0.45 sd mean shift of a normal gives PSI ~0.17 on 10 quantile bins: inside [0.1, 0.25).
    report = feature_drift(_frame(1), _frame(2, score_shift=0.45), FEATURES, CONTINUOUS)
    assert _status(report) == {"purchases_7d": "ok", "session_seconds": "ok", "score": "warn"}
    [score] = [d for d in report if d.feature == "score"]
    assert PSI_WARN + 0.03 < score.psi < PSI_FAIL - 0.03
    assert worst_status(report) == "warn"


def test_worst_status_orders_by_severity():
    def drift(status):
        return FeatureDrift("f", 0.0, None, None, status)

    assert worst_status([]) == "ok"
    assert worst_status([drift("warn"), drift("ok")]) == "warn"
    assert worst_status([drift("ok"), drift("fail"), drift("warn")]) == "fail"


def test_ks_same_distribution_is_small_and_not_significant():
    rng_a, rng_b = np.random.default_rng(11), np.random.default_rng(12)
    statistic, pvalue = ks(rng_a.normal(size=2000), rng_b.normal(size=2000))
    assert statistic < 0.05 and pvalue > 0.01


def test_ks_statistic_is_sup_distance_between_empirical_cdfs():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.0, 1.0, 500), rng.normal(0.5, 1.0, 400)
    grid = np.sort(np.concatenate([a, b]))
    f_a = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    f_b = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    statistic, pvalue = ks(np.append(a, np.nan), b)  # nulls are dropped before KS
    assert statistic == pytest.approx(np.abs(f_a - f_b).max(), abs=1e-12)
    assert statistic > 0.1 and pvalue < 1e-6


def test_ks_without_non_null_values_is_nan():
    assert all(math.isnan(v) for v in ks([np.nan, None], [1.0, 2.0]))


def test_report_has_ks_for_continuous_features_only():
    report = {d.feature: d for d in feature_drift(_frame(1), _frame(2), FEATURES, CONTINUOUS)}
    assert report["purchases_7d"].ks_statistic is None and report["purchases_7d"].ks_pvalue is None
    assert report["score"].ks_statistic is not None and 0 <= report["score"].ks_statistic < 0.05


def test_drift_chart_writes_png(tmp_path):
    training, serving = _frame(1), _frame(2, score_shift=0.45)
    serving.loc[::4, "purchases_7d"] = np.nan
    report = feature_drift(training, serving, FEATURES, CONTINUOUS)
    path = drift_chart(training, serving, report, tmp_path / "drift.png")
    assert path == tmp_path / "drift.png"
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


# Keyed features: a value per key (category) at an as-of time, repeated over the rows of that key.
CATEGORIES = ["beauty", "books", "electronics", "fashion", "grocery", "home", "sports", "toys"]


def _keyed_rows(values: dict[str, float], n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """n users, each with a uniformly drawn favourite category and that category's value."""
    rng = np.random.default_rng(seed)
    favourite = rng.choice(CATEGORIES, n)
    return pd.DataFrame(
        {"favourite_category": favourite, "category_views_7d": [values[c] for c in favourite]}
    )


def test_a_few_percent_move_of_keyed_values_is_ok_by_key_where_value_bins_fail():
    # What the demo showed (category_views_7d a week apart: beauty 3534 -> 3605, books 3000 -> 3262,
    # ...): every category moved by -1..+9 %, which reorders close categories. One value bin per
    # training value, split at midpoints, turns that reordering into PSI ~4; by key it is nothing.
    week_before = dict(zip(CATEGORIES, [3534, 3000, 3542, 2985, 3261, 3162, 3186, 3118]))
    serving_day = dict(zip(CATEGORIES, [3605, 3262, 3616, 3095, 3409, 3237, 3236, 3089]))
    training, serving = _keyed_rows(week_before, seed=1), _keyed_rows(serving_day, seed=2)
    assert psi(training["category_views_7d"], serving["category_views_7d"]) > PSI_FAIL
    drift = keyed_feature_drift(training, serving, "category_views_7d", "favourite_category")
    assert drift.psi < 0.01  # the same key mix, up to sampling
    assert drift.ks_statistic == pytest.approx(
        3 / 8
    )  # 3 of 8 serving values above every training one
    assert drift.status == "ok" and drift.key == "favourite_category"


def test_keyed_values_doubled_fail_on_the_exact_ks_p_value():
    before = {c: 400.0 + 50 * i for i, c in enumerate(CATEGORIES)}
    drift = keyed_feature_drift(
        _keyed_rows(before, seed=1),
        _keyed_rows({c: 2 * v for c, v in before.items()}, seed=2),
        "category_views_7d",
        "favourite_category",
    )
    # Every serving value above every training value: D = 1, and the exact two-sided p-value is the
    # share of the C(16, 8) = 12870 splits of 16 values into two eights that are this extreme (2).
    assert drift.ks_statistic == 1.0 and drift.ks_pvalue == pytest.approx(2 / 12870, rel=1e-6)
    assert drift.psi < 0.01 and drift.status == "fail"


def test_ks_status_thresholds():
    assert KS_P_FAIL < KS_P_WARN
    assert [ks_status(p) for p in (0.5, 0.04, 0.009, None, math.nan)] == [
        "ok",
        "warn",
        "fail",
        "ok",
        "ok",
    ]


def test_keyed_psi_is_over_keys_with_a_null_bin_for_no_key_or_no_value():
    # Training: a 50 %, b 50 %. Serving: a 50 %, b 25 %, and 25 % with no key ("" or null) or a
    # key without a value: those are the null bin, empty in training (floored to 1e-4).
    training = pd.DataFrame({"k": ["a"] * 50 + ["b"] * 50, "f": [1.0] * 50 + [2.0] * 50})
    serving = pd.DataFrame(
        {
            "k": ["a"] * 50 + ["b"] * 25 + [""] * 10 + [None] * 5 + ["b"] * 10,
            "f": [1.0] * 50 + [2.0] * 25 + [np.nan] * 15 + [np.nan] * 10,
        }
    )
    p = np.array([0.5, 0.25, 0.25])
    q = np.array([0.5, 0.5, 1e-4]) / 1.0001
    expected = float(np.sum((p - q) * np.log(p / q)))
    drift = keyed_feature_drift(training, serving, "f", "k")
    assert drift.psi == pytest.approx(expected, rel=1e-9)
    assert drift.psi > PSI_FAIL and drift.status == "fail"
    assert drift.ks_statistic == 0.0  # the values per key did not move


def test_a_key_that_takes_over_fails_on_psi():
    values = {c: 3000.0 + 10 * i for i, c in enumerate(CATEGORIES)}
    serving = _keyed_rows(values, seed=2).assign(
        favourite_category="electronics", category_views_7d=values["electronics"]
    )
    drift = keyed_feature_drift(
        _keyed_rows(values, seed=1), serving, "category_views_7d", "favourite_category"
    )
    assert drift.psi > PSI_FAIL and drift.status == "fail"


def test_feature_drift_compares_keyed_features_by_key_and_charts_them(tmp_path):
    before = {c: 400.0 + 50 * i for i, c in enumerate(CATEGORIES)}
    training = _keyed_rows(before, n=N, seed=1).assign(**_frame(1))
    serving = _keyed_rows(before, n=N, seed=2).assign(**_frame(2))
    report = feature_drift(
        training,
        serving,
        [*FEATURES, "category_views_7d"],
        CONTINUOUS,
        keys={"category_views_7d": "favourite_category"},
    )
    assert _status(report) == dict.fromkeys([*FEATURES, "category_views_7d"], "ok")
    assert [d.key for d in report] == [None, None, None, "favourite_category"]
    path = drift_chart(training, serving, report, tmp_path / "drift.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_serving_is_compared_with_the_newest_prediction_time_not_the_warm_up():
    # A 30-day count over a lake whose data starts on day 0: at prediction time d it covers
    # min(d, 30) days. Serving (day 30) is warm; the pooled training set (days 1..23, the last label
    # horizon before day 30) is mostly warm-up, its newest prediction time 23 of 30 days warm, a
    # small move next to how much users differ (daily rates spread like the demo's, gamma(0.7)).
    rng = np.random.default_rng(5)
    days, users = np.arange(1, 24), 2000
    rate = rng.gamma(0.7, 1.5, users)
    training = pd.DataFrame(
        {
            "event_timestamp": pd.to_datetime("2026-10-01", utc=True)
            + pd.to_timedelta(np.repeat(days, users), unit="D"),
            "events_30d": rng.poisson(
                np.repeat(np.minimum(days, 30), users) * np.tile(rate, len(days))
            ),
        }
    )
    serving = pd.DataFrame({"events_30d": rng.poisson(30 * rate)})
    newest = newest_prediction_time(training)
    assert (
        len(newest) == users
        and (newest["event_timestamp"] == training["event_timestamp"].max()).all()
    )
    assert psi(training["events_30d"], serving["events_30d"]) > PSI_FAIL
    assert psi(newest["events_30d"], serving["events_30d"]) < PSI_WARN
