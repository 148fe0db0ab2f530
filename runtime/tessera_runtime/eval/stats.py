"""Statistics of the evaluation gate, in pure Python so that every image can run it.

Everything here is deterministic: bootstraps take an explicit seed, and the rank tests use the normal
approximation with a tie correction (the sample sizes of an evaluation, 20 and more, make it accurate).
Tests cross-check each function against scipy.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

Alternative = Literal["two-sided", "less", "greater"]

_SQRT2 = math.sqrt(2.0)


def normal_cdf(x: float) -> float:
    """P(Z <= x) for a standard normal Z."""
    return 0.5 * math.erfc(-x / _SQRT2)


def normal_sf(x: float) -> float:
    """P(Z > x) for a standard normal Z (accurate in the far tail, unlike 1 - cdf)."""
    return 0.5 * math.erfc(x / _SQRT2)


def binomial_pmf(k: int, n: int, p: float) -> float:
    """P(X = k) for X ~ Binomial(n, p)."""
    if k < 0 or k > n:
        return 0.0
    if p <= 0.0:
        return 1.0 if k == 0 else 0.0
    if p >= 1.0:
        return 1.0 if k == n else 0.0
    log_pmf = (
        math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
        + k * math.log(p) + (n - k) * math.log1p(-p)
    )  # fmt: skip
    return math.exp(log_pmf)


def binomial_test(k: int, n: int, p: float = 0.5, alternative: Alternative = "two-sided") -> float:
    """Exact binomial test of k successes in n trials against success probability p.

    The two-sided p-value sums the probabilities of every outcome no more likely than the observed one
    (the same definition as scipy.stats.binomtest).
    """
    if not 0 <= k <= n:
        raise ValueError(f"k must lie in [0, n], got k={k}, n={n}")
    if n == 0:
        return 1.0
    pmf = [binomial_pmf(i, n, p) for i in range(n + 1)]
    if alternative == "greater":
        return min(1.0, math.fsum(pmf[k:]))
    if alternative == "less":
        return min(1.0, math.fsum(pmf[: k + 1]))
    observed = pmf[k]
    # The relative tolerance keeps outcomes whose probability equals the observed one up to rounding.
    return min(1.0, math.fsum(q for q in pmf if q <= observed * (1 + 1e-7)))


def mcnemar_exact(candidate_only: int, baseline_only: int) -> float:
    """Exact (binomial) McNemar test: two-sided p-value that paired accuracies are equal.

    candidate_only: items only the candidate got right; baseline_only: items only the baseline got right.
    """
    discordant = candidate_only + baseline_only
    if discordant == 0:
        return 1.0
    return binomial_test(candidate_only, discordant, 0.5, "two-sided")


def rank_with_ties(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Average ranks (1-based) of values, and the sizes of the groups of tied values."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    ties: list[int] = []
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        average = (start + end) / 2.0 + 1.0
        for position in range(start, end + 1):
            ranks[order[position]] = average
        ties.append(end - start + 1)
        start = end + 1
    return ranks, ties


def _z_p_value(z: float, alternative: Alternative) -> float:
    if alternative == "greater":
        return normal_sf(z)
    if alternative == "less":
        return normal_cdf(z)
    return min(1.0, 2.0 * normal_sf(abs(z)))


@dataclass(frozen=True)
class RankTest:
    """Outcome of a rank test."""

    statistic: float
    """W+ (signed-rank) or U of the first sample (Mann-Whitney)."""
    z: float
    """Standardised statistic."""
    p_value: float
    """p-value of the requested alternative."""


def wilcoxon_signed_rank(differences: Sequence[float], alternative: Alternative = "two-sided") -> RankTest:
    """Wilcoxon signed-rank test of paired differences (normal approximation, tie-corrected variance).

    Zero differences are dropped (Wilcoxon's convention). alternative="greater" tests whether the
    differences tend to be positive.
    """
    nonzero = [d for d in differences if d != 0]
    n = len(nonzero)
    if n == 0:
        return RankTest(0.0, 0.0, 1.0)
    ranks, ties = rank_with_ties([abs(d) for d in nonzero])
    w_plus = math.fsum(r for r, d in zip(ranks, nonzero, strict=True) if d > 0)
    mean = n * (n + 1) / 4.0
    variance = n * (n + 1) * (2 * n + 1) / 24.0 - sum(t**3 - t for t in ties) / 48.0
    if variance <= 0:
        return RankTest(w_plus, 0.0, 1.0)
    z = (w_plus - mean) / math.sqrt(variance)
    return RankTest(w_plus, z, _z_p_value(z, alternative))


def mann_whitney_u(
    first: Sequence[float], second: Sequence[float], alternative: Alternative = "two-sided"
) -> RankTest:
    """Mann-Whitney U test (normal approximation with tie correction and continuity correction).

    alternative="less" tests whether values of `first` tend to be smaller than values of `second`.
    """
    n1, n2 = len(first), len(second)
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples need at least one value")
    ranks, ties = rank_with_ties([*first, *second])
    u1 = math.fsum(ranks[:n1]) - n1 * (n1 + 1) / 2.0
    n = n1 + n2
    mean = n1 * n2 / 2.0
    tie_term = sum(t**3 - t for t in ties) / (n * (n - 1)) if n > 1 else 0.0
    variance = n1 * n2 / 12.0 * ((n + 1) - tie_term)
    if variance <= 0:
        return RankTest(u1, 0.0, 1.0)
    sd = math.sqrt(variance)
    if alternative == "greater":
        z = (u1 - mean - 0.5) / sd
    elif alternative == "less":
        z = (u1 - mean + 0.5) / sd
    else:
        z = (max(u1, n1 * n2 - u1) - mean - 0.5) / sd
    return RankTest(u1, z, _z_p_value(z, alternative))


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (family-wise error control), in the input's order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for position, index in enumerate(order):
        running = max(running, min(1.0, (m - position) * p_values[index]))
        adjusted[index] = running
    return adjusted


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between order statistics (numpy's default)."""
    if not values:
        raise ValueError("percentile of an empty sample")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    fraction = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


@dataclass(frozen=True)
class Bootstrap:
    """Replicates of a statistic under resampling, sorted, with the estimate on the full sample."""

    estimate: float
    replicates: tuple[float, ...]

    def lower(self, alpha: float) -> float:
        """One-sided lower confidence bound at level 1 - alpha (percentile method)."""
        return percentile(self.replicates, 100.0 * alpha)

    def upper(self, alpha: float) -> float:
        """One-sided upper confidence bound at level 1 - alpha (percentile method)."""
        return percentile(self.replicates, 100.0 * (1.0 - alpha))

    def p_at_most(self, bound: float) -> float:
        """Bootstrap p-value of H0 'the statistic is at most bound' (small when replicates lie above it)."""
        count = sum(1 for r in self.replicates if r <= bound)
        return (count + 1) / (len(self.replicates) + 1)

    def p_at_least(self, bound: float) -> float:
        """Bootstrap p-value of H0 'the statistic is at least bound' (small when replicates lie below it)."""
        count = sum(1 for r in self.replicates if r >= bound)
        return (count + 1) / (len(self.replicates) + 1)


def resample_indices(n: int, resamples: int, seed: int) -> list[list[int]]:
    """`resamples` lists of n indices drawn with replacement from range(n), reproducible from the seed."""
    rng = random.Random(seed)
    population = range(n)
    return [rng.choices(population, k=n) for _ in range(resamples)]


def bootstrap(
    n: int,
    statistics: Callable[[Sequence[int]], Sequence[float]],
    resamples: int,
    seed: int,
) -> list[Bootstrap]:
    """Paired bootstrap of several statistics computed on the same resampled items.

    `statistics(indices)` returns a tuple of figures for the items at those indices; every figure is
    bootstrapped over the same resamples, so differences between figures stay paired.
    """
    if n <= 0:
        raise ValueError("bootstrap needs at least one item")
    full = list(statistics(range(n)))
    columns: list[list[float]] = [[] for _ in full]
    for indices in resample_indices(n, resamples, seed):
        for column, value in zip(columns, statistics(indices), strict=True):
            column.append(value)
    return [
        Bootstrap(estimate, tuple(sorted(column))) for estimate, column in zip(full, columns, strict=True)
    ]


def unpaired_bootstrap(
    first: Sequence[float],
    second: Sequence[float],
    statistic: Callable[[Sequence[float], Sequence[float]], float],
    resamples: int,
    seed: int,
) -> Bootstrap:
    """Bootstrap of a two-sample statistic, each sample resampled on its own (for independent samples)."""
    rng = random.Random(seed)
    replicates = [
        statistic(rng.choices(first, k=len(first)), rng.choices(second, k=len(second)))
        for _ in range(resamples)
    ]
    return Bootstrap(statistic(first, second), tuple(sorted(replicates)))


def tango_statistic(candidate_only: int, baseline_only: int, n: int, delta: float) -> float:
    """Tango's score statistic for a difference `delta` of paired proportions (candidate minus baseline).

    Large values say the true difference lies above delta. At delta = 0 its square is McNemar's
    chi-square. Unlike a bootstrap, it stays honest when few or no items differ between the two.
    """
    b, c = candidate_only, baseline_only
    a_coef = 2.0 * n
    b_coef = -b - c + (2.0 * n - b + c) * delta
    c_coef = -c * delta * (1.0 - delta)
    # Constrained maximum-likelihood estimate of the baseline-only probability under the hypothesis.
    q = (math.sqrt(max(b_coef * b_coef - 4.0 * a_coef * c_coef, 0.0)) - b_coef) / (2.0 * a_coef)
    numerator = b - c - n * delta
    variance = n * (2.0 * q + delta * (1.0 - delta))
    if variance <= 1e-12:
        return math.copysign(math.inf, numerator) if numerator else 0.0
    return numerator / math.sqrt(variance)


def tango_bound(candidate_only: int, baseline_only: int, n: int, alpha: float, upper: bool) -> float:
    """One-sided (1 - alpha) confidence bound of the paired difference by inverting Tango's score test."""
    z = normal_quantile(1.0 - alpha)
    target = -z if upper else z
    low, high = -1.0, 1.0
    for _ in range(100):  # the statistic decreases in delta: bisect for statistic == target
        middle = (low + high) / 2.0
        if tango_statistic(candidate_only, baseline_only, n, middle) > target:
            low = middle
        else:
            high = middle
    return (low + high) / 2.0


def normal_quantile(p: float) -> float:
    """The standard normal quantile (inverse cdf), by bisection on erfc: accurate to 1e-12."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"quantile of p={p} outside (0, 1)")
    if p > 0.5:  # the upper tail through the survival function, which keeps its precision there
        return -normal_quantile(1.0 - p)
    low, high = -40.0, 0.0
    for _ in range(200):
        middle = (low + high) / 2.0
        if normal_cdf(middle) < p:
            low = middle
        else:
            high = middle
    return (low + high) / 2.0
