from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from retrain.config import DriftSpec
from retrain.drift import StatTestResult, adjust_p_values, chi_square_test, detect_drift, ks_test, psi
from retrain.serial import to_jsonable
from retrain.snapshots import Schema


def _samples(kind: str, n1: int, n2: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "same":
        return rng.normal(size=n1), rng.normal(size=n2)
    if kind == "shifted":
        return rng.normal(size=n1), rng.normal(0.05, 1.0, size=n2)
    if kind == "ties":
        return rng.integers(0, 5, n1).astype(float), rng.integers(0, 6, n2).astype(float)
    if kind == "skewed":
        return rng.lognormal(0, 2, n1), rng.lognormal(0.02, 2, n2)
    if kind == "outlier":
        x, y = rng.normal(size=n1), rng.normal(size=n2)
        x[0] = 1e12
        return x, y
    raise ValueError(kind)


SIZES = [(40, 55), (3000, 2000), (9000, 12000), (30000, 25000), (120000, 90000)]
KINDS = ["same", "shifted", "ties", "skewed", "outlier"]


@pytest.mark.parametrize(
    ("method", "sizes"),
    # scipy's exact distribution is quadratic in the sample sizes: keep its samples small.
    [("auto", SIZES), ("asymp", SIZES), ("exact", SIZES[:3])],
)
def test_ks_equals_scipy_for_every_feature_at_once(method: str, sizes: list) -> None:
    cases = [(kind, n1, n2) for n1, n2 in sizes for kind in KINDS]
    pairs = [_samples(kind, n1, n2, seed) for seed, (kind, n1, n2) in enumerate(cases)]
    results = ks_test([x for x, _ in pairs], [y for _, y in pairs], method=method)
    for (x, y), result in zip(pairs, results, strict=True):
        expected = stats.ks_2samp(x, y, method=method)
        assert result.statistic == pytest.approx(expected.statistic, abs=1e-9)
        assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=0), "p-values near zero too"
        assert result.effect == result.statistic


@pytest.mark.slow
def test_ks_equals_scipy_at_scale_for_skewed_discrete_and_shifted_features() -> None:
    # Large enough that every refinement path runs: several split levels, the equal-mass re-placement of
    # skewed samples, and bins holding a single repeated value.
    pairs = [_samples(kind, 400_000, 350_000, seed) for seed, kind in enumerate(KINDS)]
    for (x, y), result in zip(pairs, ks_test([x for x, _ in pairs], [y for _, y in pairs]), strict=True):
        expected = stats.ks_2samp(x, y)
        assert result.statistic == pytest.approx(expected.statistic, abs=1e-12)
        assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=0), "p-values near zero too"


def test_ks_drops_nan_like_scipy_on_the_remaining_values() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=50000), rng.normal(0.1, 1, size=40000)
    x[::7] = np.nan
    y[::11] = np.nan
    (result,) = ks_test([x], [y])
    expected = stats.ks_2samp(x[~np.isnan(x)], y[~np.isnan(y)])
    assert result.statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=0), "p-values near zero too"


def test_ks_known_answer_for_disjoint_samples() -> None:
    (result,) = ks_test([np.array([1.0, 2.0, 3.0])], [np.array([4.0, 5.0, 6.0])])
    assert result.statistic == 1.0
    assert result.p_value == pytest.approx(0.1, abs=1e-12)  # exact: 2 / C(6, 3)


@pytest.mark.parametrize(
    ("reference", "current"),
    [([], [1.0, 2.0]), ([np.nan, np.nan], [1.0]), ([1.0], [])],
)
def test_ks_empty_or_all_nan_gives_nan_not_an_error(reference: list, current: list) -> None:
    (result,) = ks_test([np.array(reference, dtype=float)], [np.array(current, dtype=float)])
    assert math.isnan(result.statistic) and math.isnan(result.p_value)


def test_ks_identical_constant_columns_do_not_drift() -> None:
    (result,) = ks_test([np.full(50000, 3.0)], [np.full(60000, 3.0)])
    assert result.statistic == 0.0 and result.p_value == 1.0


def test_chi_square_equals_scipy_and_keeps_new_categories() -> None:
    reference = pd.Series(["a"] * 50 + ["b"] * 30 + ["c"] * 20)
    current = pd.Series(["a"] * 40 + ["b"] * 30 + ["c"] * 20 + ["new"] * 10)
    result = chi_square_test(reference, current)
    table = np.array([[50, 30, 20, 0], [40, 30, 20, 10]])
    expected = stats.chi2_contingency(table, correction=False)
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)
    assert result.effect == pytest.approx(psi(table[0], table[1]))


def test_chi_square_with_a_category_gone_from_the_current_month_equals_scipy() -> None:
    result = chi_square_test(pd.Series(["a"] * 5 + ["b"] * 5), pd.Series(["a"] * 10))
    expected = stats.chi2_contingency(np.array([[5, 5], [10, 0]]), correction=False)
    assert result.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert result.statistic == pytest.approx(20 / 3, rel=1e-12), "expected 7.5 and 2.5 in each row"
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9)


def test_psi_known_answer() -> None:
    # p = (0.5, 0.5), q = (0.25, 0.75): PSI = (0.25-0.5)ln(0.5) + (0.75-0.5)ln(1.5)
    assert psi(np.array([50, 50]), np.array([25, 75])) == pytest.approx(-0.25 * math.log(0.5) + 0.25 * math.log(1.5))
    assert psi(np.array([10, 10]), np.array([10, 10])) == 0.0


def test_chi_square_single_category_and_empty_and_nulls() -> None:
    assert chi_square_test(pd.Series(["a"] * 5), pd.Series(["a"] * 9)) == StatTestResult(0.0, 1.0, 0.0)
    empty = chi_square_test(pd.Series([None, None], dtype=object), pd.Series(["a"]))
    assert math.isnan(empty.statistic) and math.isnan(empty.p_value)
    with_nulls = chi_square_test(pd.Series(["a", "b", None] * 20), pd.Series(["a", "b"] * 20))
    assert with_nulls.p_value == pytest.approx(1.0)


def test_bonferroni_and_benjamini_hochberg_known_answers() -> None:
    p = [0.01, 0.04, 0.03, 0.5, math.nan]
    assert adjust_p_values(p, "bonferroni")[:4] == pytest.approx([0.04, 0.16, 0.12, 1.0])
    assert math.isnan(adjust_p_values(p, "bonferroni")[4])
    expected_bh = stats.false_discovery_control([0.01, 0.04, 0.03, 0.5], method="bh")
    assert adjust_p_values(p, "bh")[:4] == pytest.approx(list(expected_bh))
    assert adjust_p_values([], "bh") == [] and adjust_p_values([math.nan], "bonferroni")[0] != 0
    with pytest.raises(ValueError, match=r"^unknown correction 'holm'$"):
        adjust_p_values([0.5], "holm")


def _frame(rng: np.random.Generator, rows: int, shift: float = 0.0, plan_p=(0.5, 0.3, 0.2)) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "x1": rng.normal(shift, 1, rows),
            "x2": rng.normal(0, 1, rows),
            "plan": rng.choice(["basic", "standard", "premium"], rows, p=plan_p).astype(object),
        }
    )


SCHEMA = Schema(numeric=("x1", "x2"), categorical=("plan",))


def test_every_feature_is_tested_and_the_drifted_ones_are_named() -> None:
    rng = np.random.default_rng(0)
    reference = _frame(rng, 5000)
    current = _frame(rng, 5000, shift=0.8, plan_p=(0.2, 0.3, 0.5))
    report = detect_drift(reference, current, SCHEMA, DriftSpec())
    assert [f.name for f in report.features] == ["x1", "x2", "plan"]
    assert report.drifted_features == ["x1", "plan"]
    assert report.drifted and report.share_drifted == pytest.approx(2 / 3)
    x1 = report.features[0]
    assert x1.test == "ks" and x1.p_adjusted == pytest.approx(min(1.0, 3 * x1.p_value))
    assert report.features[2].test == "chi2" and report.features[2].effect_name == "psi"
    assert to_jsonable(report)["features"][0]["name"] == "x1"


def test_effect_floor_ignores_a_significant_but_trivial_shift_at_a_million_rows() -> None:
    rng = np.random.default_rng(1)
    reference = pd.DataFrame({"x1": rng.normal(0, 1, 1_000_000)})
    current = pd.DataFrame({"x1": rng.normal(0.02, 1, 1_000_000)})
    schema = Schema(numeric=("x1",))
    feature = detect_drift(reference, current, schema, DriftSpec()).features[0]
    assert feature.p_adjusted < 1e-10, "the shift is statistically real"
    assert not feature.drifted and "below floor" in feature.reason
    loose = detect_drift(reference, current, schema, DriftSpec(min_ks_statistic=0.0)).features[0]
    assert loose.drifted


def test_a_rising_null_rate_is_drift_on_its_own() -> None:
    rng = np.random.default_rng(2)
    reference = _frame(rng, 4000)
    current = _frame(rng, 4000)
    current.loc[current.index[:800], "x2"] = np.nan
    report = detect_drift(reference, current, SCHEMA, DriftSpec())
    x2 = report.features[1]
    assert x2.null_rate_current == pytest.approx(0.2) and x2.null_rate_change == pytest.approx(0.2)
    assert x2.drifted and "null rate rose" in x2.reason


def test_a_falling_null_rate_is_drift_on_its_own_even_when_the_values_look_alike() -> None:
    # As in real catalogues where a rating field goes from 92% blank to 67% blank in a year: the values
    # that are there keep their distribution, but the model sees a new mix of missing and present inputs.
    rng = np.random.default_rng(3)
    reference = _frame(rng, 4000)
    current = _frame(rng, 4000)
    reference.loc[reference.index[:1200], "x2"] = np.nan
    current.loc[current.index[:400], "x2"] = np.nan
    x2 = detect_drift(reference, current, SCHEMA, DriftSpec()).features[1]
    assert x2.null_rate_change == pytest.approx(-0.2)
    assert x2.p_adjusted >= 0.05, "the present values alone show no drift"
    assert x2.drifted and x2.reason == "null rate fell by 20.0% (> 10.0%)"
    tolerant = detect_drift(reference, current, SCHEMA, DriftSpec(max_null_rate_decrease=0.25)).features[1]
    assert not tolerant.drifted


def test_a_heavy_tailed_feature_is_pictured_on_log1p_bins_and_a_symmetric_one_on_even_bins() -> None:
    rng = np.random.default_rng(5)
    # Like amounts spent: a median near 50 and a tail in the tens of thousands.
    spend = rng.lognormal(4.0, 2.0, 20_000)
    frame = pd.DataFrame({"spend": spend, "rating": rng.normal(6, 1.5, 20_000)})
    schema = Schema(numeric=("spend", "rating"))
    features = {f.name: f for f in detect_drift(frame, frame, schema, DriftSpec()).features}
    spend_picture, rating_picture = features["spend"].distribution, features["rating"].distribution
    assert spend_picture.scale == "log1p" and rating_picture.scale == "linear"
    low, high = np.quantile(spend, [0.005, 0.995])
    np.testing.assert_allclose(np.log1p(spend_picture.edges), np.linspace(np.log1p(low), np.log1p(high), 31))
    assert max(spend_picture.reference) < 0.2, "no single bin swallows the body of the distribution"
    assert np.diff(rating_picture.edges) == pytest.approx(np.full(30, np.diff(rating_picture.edges)[0]))


def test_whole_numbers_are_pictured_on_bins_centred_on_them_so_no_bin_is_empty_by_construction() -> None:
    rng = np.random.default_rng(6)
    # Years of experience a year apart (a panel ageing by one), months of tenure, and counts of votes with a
    # long tail.
    experience = rng.integers(4, 14, 10_000).astype(float)
    tenure = rng.integers(0, 73, 10_000).astype(float)
    votes = np.floor(rng.lognormal(2.0, 2.0, 20_000))
    reference = pd.DataFrame({"experience": experience, "tenure": tenure, "votes": votes[:10_000]})
    current = pd.DataFrame({"experience": experience + 1, "tenure": tenure, "votes": votes[10_000:]})
    schema = Schema(numeric=("experience", "tenure", "votes"))
    features = {f.name: f for f in detect_drift(reference, current, schema, DriftSpec()).features}
    ages = features["experience"].distribution
    assert ages.edges == tuple(value + 0.5 for value in range(3, 15)), "one bin per whole year, 4 to 14"
    assert ages.reference[0] == pytest.approx(np.mean(experience == 4))
    assert ages.current[0] == 0 and ages.current[-1] == pytest.approx(np.mean(experience == 13))
    months = features["tenure"].distribution
    assert months.edges == tuple(value - 0.5 for value in range(0, 76, 3)), "73 values in 25 bins of 3 each"
    assert months.reference == pytest.approx([np.mean((tenure >= v) & (tenure < v + 3)) for v in range(0, 75, 3)])
    counts = features["votes"].distribution
    assert counts.scale == "log1p"
    assert all(edge % 1 == 0.5 for edge in counts.edges), "edges fall halfway between whole numbers"
    assert counts.edges[:3] == (-0.5, 0.5, 1.5), "the body's counts 0 and 1 each have their own bin"
    assert min(counts.reference) > 0, "every bin holds at least one whole number, so none is empty"


def test_a_many_category_picture_shows_the_categories_that_changed_even_a_new_small_one() -> None:
    # 30 stores with 200 rows each; this month store s00 sheds half its rows and a new store opens small.
    stores = [f"s{i:02d}" for i in range(30)]
    reference = pd.DataFrame({"store": np.repeat(stores, 200)})
    current = pd.DataFrame({"store": np.concatenate([np.repeat(stores, 200)[100:], np.repeat("new", 150)])})
    schema = Schema(categorical=("store",))
    picture = detect_drift(reference, current, schema, DriftSpec()).features[0].distribution
    assert picture.categories[-1] == "(other)" and len(picture.categories) == 13
    shown = picture.categories[:-1]
    assert {"new", "s00"} <= set(shown), "the two categories that changed, though neither is the most common"
    assert shown[0] == "s01" and shown[-1] == "new", "drawn most common first"
    total = 6000 - 100 + 150
    assert picture.current[shown.index("new")] == pytest.approx(150 / total)
    assert picture.reference[shown.index("new")] == 0
    assert sum(picture.reference) == pytest.approx(1) and sum(picture.current) == pytest.approx(1)


def test_dataset_drift_share_threshold() -> None:
    rng = np.random.default_rng(4)
    reference = _frame(rng, 5000)
    current = _frame(rng, 5000, shift=0.8)
    assert detect_drift(reference, current, SCHEMA, DriftSpec()).drifted
    report = detect_drift(reference, current, SCHEMA, DriftSpec(dataset_drift_share=0.5))
    assert report.drifted_features == ["x1"] and not report.drifted


def test_no_drift_between_samples_of_the_same_world() -> None:
    rng = np.random.default_rng(5)
    report = detect_drift(_frame(rng, 5000), _frame(rng, 5000), SCHEMA, DriftSpec())
    assert not report.drifted and report.drifted_features == []


def test_dataset_drift_at_exactly_its_share_of_features() -> None:
    rng = np.random.default_rng(4)
    reference = _frame(rng, 5000)
    current = _frame(rng, 5000, shift=0.8)
    report = detect_drift(reference, current, SCHEMA, DriftSpec(dataset_drift_share=1 / 3))
    assert report.drifted_features == ["x1"] and report.share_drifted == 1 / 3 and report.drifted
    just_over = detect_drift(reference, current, SCHEMA, DriftSpec(dataset_drift_share=1 / 3 + 1e-12))
    assert not just_over.drifted


# One feature's verdict at each threshold's edge, on the side docs/configuration.md says wins: a feature
# drifts when its adjusted p-value is below alpha and its effect reaches the floor, or when its null rate
# rises or falls by more than allowed.
SPEC = DriftSpec(alpha=0.125, max_null_rate_increase=0.25, max_null_rate_decrease=0.25)


@pytest.mark.parametrize(
    ("p_adjusted", "null_change", "effect", "drifted", "why"),
    [
        (0.0625, 0.0, 0.5, True, "adjusted p=0.0625 < alpha=0.125 and effect 0.5 >= 0.5"),
        (0.125, 0.0, 0.5, False, "adjusted p=0.125 >= alpha=0.125"),
        (0.0625, 0.0, 0.4999, False, "significant but effect 0.4999 below floor 0.5"),
        (0.5, 0.25, 0.0, False, "adjusted p=0.5 >= alpha=0.125"),
        (0.5, 0.2500001, 0.0, True, "null rate rose by 25.0% (> 25.0%)"),
        (0.5, -0.25, 0.0, False, "adjusted p=0.5 >= alpha=0.125"),
        (0.5, -0.2500001, 0.0, True, "null rate fell by 25.0% (> 25.0%)"),
        (math.nan, 0.0, math.nan, False, "no values on one side to compare"),
        (math.nan, 0.5, math.nan, True, "null rate rose by 50.0% (> 25.0%)"),
    ],
)
def test_a_features_verdict_at_each_thresholds_edge(
    p_adjusted: float, null_change: float, effect: float, drifted: bool, why: str
) -> None:
    from retrain.drift import feature_verdict

    result = StatTestResult(statistic=effect, p_value=p_adjusted, effect=effect)
    assert feature_verdict(result, p_adjusted, null_change, 0.5, SPEC) == (drifted, why)


def test_the_verdict_uses_the_corrected_p_value_not_the_raw_one() -> None:
    """Feature b is significant on its own (p = 0.0196) but not once three features were tested
    (Bonferroni: 3 x 0.0196 = 0.0588 >= 0.05); with Benjamini-Hochberg it is (its rank-2 share: 0.0294)."""
    rng = np.random.default_rng(1)
    reference = pd.DataFrame({name: rng.normal(0, 1, 400) for name in "abc"})
    current = pd.DataFrame({"a": rng.normal(0.2, 1, 400), "b": rng.normal(0.1, 1, 400), "c": rng.normal(0, 1, 400)})
    schema = Schema(numeric=("a", "b", "c"))
    bonferroni = detect_drift(reference, current, schema, DriftSpec(min_ks_statistic=0.0))
    a, b, c = bonferroni.features
    assert b.p_value == pytest.approx(0.019594795142993927, rel=1e-9) and b.p_value < 0.05
    assert [f.p_adjusted for f in (a, b, c)] == pytest.approx([3 * a.p_value, 3 * b.p_value, 1.0], rel=1e-12)
    assert bonferroni.drifted_features == ["a"] and not b.drifted
    bh = detect_drift(reference, current, schema, DriftSpec(min_ks_statistic=0.0, correction="bh"))
    assert [f.p_adjusted for f in bh.features] == pytest.approx([3 * a.p_value, 1.5 * b.p_value, c.p_value], rel=1e-12)
    assert bh.drifted_features == ["a", "b"]
