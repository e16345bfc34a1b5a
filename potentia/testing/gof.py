"""Goodness-of-fit tests with an explicit false-alarm budget.

A statistical test of a correct sampler still fails with probability equal to its
false-alarm rate α. Tests state α; with k independent tests, the family's false-alarm
probability is at most k·α (Bonferroni). Seeds are fixed, so a given test either always
passes or always fails; the budget says how unlucky a correct implementation would have to
be to fail.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["GofResult", "chi2_gof", "assert_gof", "mean_z_test", "assert_mean"]


@dataclass
class GofResult:
    """Outcome of a goodness-of-fit test."""

    statistic: float
    dof: int
    p_value: float
    false_alarm: float
    detail: str = ""

    @property
    def passed(self) -> bool:
        """Whether the p-value is at least the false-alarm budget."""
        return self.p_value >= self.false_alarm


def chi2_gof(
    samples: Iterable[Hashable] | Mapping[Hashable, int],
    probs: Mapping[Hashable, float],
    false_alarm: float = 1e-3,
    min_expected: float = 5.0,
) -> GofResult:
    """Pearson χ² test of observed outcomes against exact probabilities.

    Outcomes with expected count below ``min_expected`` are pooled into one bin (kept if
    its pooled expectation is large enough). An outcome with probability zero that was
    observed fails the test outright (p = 0).

    Args:
        samples: The observed outcomes, or a mapping outcome → count.
        probs: Exact probability of every outcome (normalised here).
        false_alarm: α, the probability that a correct sampler fails.
        min_expected: Smallest expected count of a bin.
    """
    if not 0 < false_alarm < 1:
        raise ValueError(f"`false_alarm` is {false_alarm}; it must lie in (0, 1).")
    counts = Counter(samples) if not isinstance(samples, Mapping) else Counter(dict(samples))
    n = sum(counts.values())
    tot = sum(probs.values())
    if n == 0 or tot <= 0:
        raise ValueError("`samples` and `probs` must both be non-empty.")
    p = {k: v / tot for k, v in probs.items() if v > 0}
    impossible = [k for k in counts if k not in p and counts[k] > 0]
    if impossible:
        return GofResult(
            np.inf, 0, 0.0, false_alarm, f"impossible outcomes observed: {impossible[:5]}"
        )
    keys = sorted(p, key=lambda k: -p[k])
    obs, exp, pool_o, pool_e = [], [], 0.0, 0.0
    for k in keys:
        e = n * p[k]
        if e >= min_expected:
            obs.append(counts.get(k, 0))
            exp.append(e)
        else:
            pool_o += counts.get(k, 0)
            pool_e += e
    if pool_e > 0:
        if pool_e >= min_expected or not exp:
            obs.append(pool_o)
            exp.append(pool_e)
        else:  # merge the small pool into the smallest kept bin
            obs[-1] += pool_o
            exp[-1] += pool_e
    obs_a, exp_a = np.array(obs, float), np.array(exp, float)
    dof = len(obs_a) - 1
    if dof == 0:
        return GofResult(0.0, 0, 1.0, false_alarm, "one bin only: nothing to test")
    stat = float(((obs_a - exp_a) ** 2 / exp_a).sum())
    return GofResult(stat, dof, float(stats.chi2.sf(stat, dof)), false_alarm)


def assert_gof(samples, probs, false_alarm: float = 1e-3, min_expected: float = 5.0) -> GofResult:
    """:func:`chi2_gof` that raises ``AssertionError`` when the test rejects."""
    res = chi2_gof(samples, probs, false_alarm, min_expected)
    if not res.passed:
        raise AssertionError(
            f"χ² goodness of fit rejected: statistic {res.statistic:.3f} on {res.dof} dof, "
            f"p = {res.p_value:.3g} < false-alarm budget {false_alarm:g}. {res.detail}"
        )
    return res


def mean_z_test(values: Iterable[float], expected: float, resolution: float = 0.0) -> float:
    """z-score of the sample mean of ``values`` against ``expected``.

    Args:
        values: Independent replicates of an estimator.
        expected: Its exact expectation.
        resolution: A floor added in quadrature to the standard error. With R replicates,
            events of probability below ~1/R are usually never observed, so when the
            empirical variance is (near) zero the standard error says nothing about them;
            ``resolution`` states the smallest deviation the test claims to resolve
            (e.g. ``expected / R``).
    """
    v = np.asarray(list(values), dtype=float)
    if v.size < 2:
        raise ValueError("`values` needs at least two numbers.")
    se = np.hypot(v.std(ddof=1) / np.sqrt(v.size), resolution)
    diff = v.mean() - expected
    if np.isclose(v.mean(), expected, rtol=1e-9, atol=1e-300):
        return 0.0  # equal up to round-off (e.g. a zero-variance estimator)
    if se == 0:
        return float(np.sign(diff) * np.inf)
    return float(diff / se)


def assert_mean(
    values: Iterable[float], expected: float, sigmas: float = 4.0, resolution: float = 0.0
) -> float:
    """Assert the mean of ``values`` lies within ``sigmas`` standard errors of ``expected``.

    See :func:`mean_z_test` for ``resolution``.
    """
    z = mean_z_test(values, expected, resolution)
    if abs(z) > sigmas:
        raise AssertionError(
            f"mean is {z:.2f} standard errors from the expected {expected!r} (limit {sigmas})"
        )
    return z
