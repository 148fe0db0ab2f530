"""The evaluation gate's statistics against scipy and numpy (reference implementations)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from tessera_runtime.eval import stats


@pytest.mark.parametrize("alternative", ["two-sided", "less", "greater"])
@pytest.mark.parametrize(
    ("k", "n", "p"),
    [
        (0, 0, 0.5),
        (3, 10, 0.5),
        (17, 40, 0.3),
        (50, 50, 0.5),
        (0, 25, 0.5),
        (7, 19, 0.5),
        (60, 200, 0.25),
        (12, 30, 0.9),
    ],
)
def test_binomial_test_matches_scipy(k: int, n: int, p: float, alternative: str) -> None:
    expected = 1.0 if n == 0 else sps.binomtest(k, n, p, alternative=alternative).pvalue
    assert stats.binomial_test(k, n, p, alternative) == pytest.approx(expected, rel=1e-9, abs=1e-12)  # type: ignore[arg-type]


@given(st.integers(0, 60), st.integers(0, 60))
@settings(max_examples=60, deadline=None)
def test_mcnemar_exact_is_scipy_binomtest_on_discordant_pairs(
    candidate_only: int, baseline_only: int
) -> None:
    total = candidate_only + baseline_only
    expected = 1.0 if total == 0 else sps.binomtest(candidate_only, total, 0.5).pvalue
    assert stats.mcnemar_exact(candidate_only, baseline_only) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_binomial_test_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError, match="k must lie"):
        stats.binomial_test(5, 3)


@pytest.mark.parametrize("alternative", ["two-sided", "less", "greater"])
@pytest.mark.parametrize("seed", range(6))
def test_wilcoxon_matches_scipy_normal_approximation(seed: int, alternative: str) -> None:
    rng = random.Random(seed)
    n = rng.randint(20, 80)
    shift = rng.choice([0.0, 0.2, -0.3])
    # Rounded values make ties and zeros, which the tie correction and zero dropping must handle.
    diffs = [round(rng.gauss(shift, 1.0), 1) for _ in range(n)]
    expected = sps.wilcoxon(
        diffs, alternative=alternative, method="approx", zero_method="wilcox", correction=False
    )
    got = stats.wilcoxon_signed_rank(diffs, alternative)  # type: ignore[arg-type]
    assert got.p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-12)


def test_wilcoxon_of_all_zero_differences_finds_nothing() -> None:
    assert stats.wilcoxon_signed_rank([0.0] * 30).p_value == 1.0


@pytest.mark.parametrize("alternative", ["two-sided", "less", "greater"])
@pytest.mark.parametrize("seed", range(6))
def test_mann_whitney_matches_scipy_asymptotic(seed: int, alternative: str) -> None:
    rng = random.Random(100 + seed)
    first = [round(rng.lognormvariate(0.0, 0.5), 1) for _ in range(rng.randint(20, 60))]
    second = [round(rng.lognormvariate(rng.choice([0.0, 0.3]), 0.5), 1) for _ in range(rng.randint(20, 60))]
    expected = sps.mannwhitneyu(
        first, second, alternative=alternative, method="asymptotic", use_continuity=True
    )
    got = stats.mann_whitney_u(first, second, alternative)  # type: ignore[arg-type]
    assert got.statistic == pytest.approx(expected.statistic)
    assert got.p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-12)


def test_mann_whitney_detects_a_clear_shift() -> None:
    fast = [0.1 + 0.001 * i for i in range(30)]
    slow = [0.2 + 0.001 * i for i in range(30)]
    assert stats.mann_whitney_u(fast, slow, "less").p_value < 1e-6
    assert stats.mann_whitney_u(fast, slow, "greater").p_value > 0.99


@given(st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=12))
@settings(max_examples=100, deadline=None)
def test_holm_adjustment_matches_its_definition(p_values: list[float]) -> None:
    adjusted = stats.holm_adjust(p_values)
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    for position, index in enumerate(order):
        # Holm: the adjusted p of the k-th smallest is the running max of (m - j) * p_(j), capped at 1.
        expected = max(min(1.0, (m - j) * p_values[order[j]]) for j in range(position + 1))
        assert adjusted[index] == pytest.approx(expected)
        assert adjusted[index] >= p_values[index]


def test_holm_on_a_worked_example() -> None:
    assert stats.holm_adjust([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])


@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=50), st.floats(0, 100))
@settings(max_examples=100, deadline=None)
def test_percentile_matches_numpy(values: list[float], q: float) -> None:
    assert stats.percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-9, abs=1e-6)


def test_rank_with_ties_matches_scipy_rankdata() -> None:
    values = [3.0, 1.0, 3.0, 2.0, 2.0, 2.0, 5.0]
    ranks, ties = stats.rank_with_ties(values)
    assert ranks == list(sps.rankdata(values))
    assert sorted(ties) == [1, 1, 2, 3]


def test_paired_bootstrap_is_reproducible_and_close_to_scipy() -> None:
    rng = random.Random(7)
    candidate = [1 if rng.random() < 0.7 else 0 for _ in range(300)]
    baseline = [1 if rng.random() < 0.6 else 0 for _ in range(300)]

    def figures(indices: object) -> tuple[float, float]:
        idx = list(indices)  # type: ignore[call-overload]
        c = sum(candidate[i] for i in idx) / len(idx)
        b = sum(baseline[i] for i in idx) / len(idx)
        return c, c - b

    first = stats.bootstrap(300, figures, resamples=3000, seed=11)
    again = stats.bootstrap(300, figures, resamples=3000, seed=11)
    other_seed = stats.bootstrap(300, figures, resamples=3000, seed=12)
    assert first == again
    assert first != other_seed
    diff = first[1]
    assert diff.estimate == pytest.approx((sum(candidate) - sum(baseline)) / 300)
    reference = sps.bootstrap(
        (np.array(candidate) - np.array(baseline),), np.mean, confidence_level=0.90, n_resamples=3000,
        method="percentile", random_state=np.random.default_rng(0),
    ).confidence_interval  # fmt: skip
    # Two-sided 90% percentile interval == the one-sided 95% bounds; different RNGs, so a loose match.
    assert diff.lower(0.05) == pytest.approx(reference.low, abs=0.012)
    assert diff.upper(0.05) == pytest.approx(reference.high, abs=0.012)
    assert diff.lower(0.05) < diff.estimate < diff.upper(0.05)


def test_bootstrap_p_values_agree_with_the_bounds() -> None:
    boot = stats.Bootstrap(0.0, tuple(sorted(i / 100.0 for i in range(-50, 51))))
    # 10 of 101 replicates are <= -0.41; the 5% lower bound lies at -0.45.
    assert boot.p_at_most(-0.41) == pytest.approx(11 / 102)
    assert boot.lower(0.05) == pytest.approx(-0.45)
    assert boot.p_at_most(-0.5) < 0.05 and boot.lower(0.05) > -0.5
    assert boot.p_at_least(0.5) < 0.05 and boot.upper(0.05) < 0.5


def test_unpaired_bootstrap_of_a_ratio_covers_the_truth() -> None:
    rng = random.Random(3)
    a = [rng.expovariate(1 / 2.0) for _ in range(200)]
    b = [rng.expovariate(1 / 1.0) for _ in range(200)]
    boot = stats.unpaired_bootstrap(a, b, lambda x, y: (sum(x) / len(x)) / (sum(y) / len(y)), 2000, seed=1)
    assert boot.lower(0.05) < 2.0 < boot.upper(0.05)
    assert boot == stats.unpaired_bootstrap(
        a, b, lambda x, y: (sum(x) / len(x)) / (sum(y) / len(y)), 2000, seed=1
    )


def test_normal_tails_match_scipy() -> None:
    for x in (-8.0, -2.0, 0.0, 1.3, 6.0, 9.0):
        assert stats.normal_cdf(x) == pytest.approx(sps.norm.cdf(x), rel=1e-9)
        assert stats.normal_sf(x) == pytest.approx(sps.norm.sf(x), rel=1e-9)


@pytest.mark.parametrize(("b", "c"), [(3, 9), (10, 2), (1, 0), (25, 25)])
def test_tango_at_zero_difference_is_mcnemar(b: int, c: int) -> None:
    z = stats.tango_statistic(b, c, 100, 0.0)
    assert z**2 == pytest.approx((b - c) ** 2 / (b + c))
    assert sps.norm.sf(abs(z)) * 2 == pytest.approx(sps.chi2.sf((b - c) ** 2 / (b + c), 1))


@pytest.mark.parametrize(
    ("b", "c", "n", "delta"), [(3, 9, 100, -0.05), (10, 2, 60, 0.1), (0, 0, 40, -0.1), (5, 1, 30, -0.2)]
)
def test_tango_uses_the_constrained_maximum_likelihood(b: int, c: int, n: int, delta: float) -> None:
    from scipy.optimize import minimize_scalar

    def negative_loglik(q: float) -> float:  # q = baseline-only probability; candidate-only = q + delta
        terms = [(b, q + delta), (c, q), (n - b - c, 1 - 2 * q - delta)]
        return float(-sum(k * np.log(p) for k, p in terms if k))

    low, high = max(0.0, -delta) + 1e-12, (1 - delta) / 2 - 1e-12
    q = minimize_scalar(negative_loglik, bounds=(low, high), method="bounded", options={"xatol": 1e-12}).x
    expected = (b - c - n * delta) / np.sqrt(n * (2 * q + delta * (1 - delta)))
    assert stats.tango_statistic(b, c, n, delta) == pytest.approx(expected, rel=1e-5)


def test_tango_bound_when_no_item_differs() -> None:
    # With b = c = 0 the statistic is sqrt(n * -d / (1 + d)); the 95% bound solves it = 1.645.
    z = sps.norm.ppf(0.95)
    for n in (8, 120):
        assert stats.tango_bound(0, 0, n, 0.05, upper=False) == pytest.approx(-(z**2) / (n + z**2), rel=1e-6)
        assert stats.tango_bound(0, 0, n, 0.05, upper=True) == pytest.approx(z**2 / (n + z**2), rel=1e-6)


def test_tango_lower_bound_covers_the_true_difference() -> None:
    rng = random.Random(5)
    n, p10, p01 = 100, 0.05, 0.09
    covered = 0
    trials = 400
    for _ in range(trials):
        draws = [rng.random() for _ in range(n)]
        b = sum(1 for u in draws if u < p10)
        c = sum(1 for u in draws if p10 <= u < p10 + p01)
        covered += stats.tango_bound(b, c, n, 0.05, upper=False) <= p10 - p01
    assert 0.91 <= covered / trials <= 0.99


def test_normal_quantile_matches_scipy() -> None:
    for p in (1e-9, 0.025, 0.05, 0.5, 0.9, 0.975, 1 - 1e-9):
        assert stats.normal_quantile(p) == pytest.approx(sps.norm.ppf(p), rel=1e-9, abs=1e-9)
