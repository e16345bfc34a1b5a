"""Tools for testing distribution correctness (public: users write their tests with these).

* :mod:`~potentia.testing.laws` — the potential laws as assertions;
* :mod:`~potentia.testing.enumerate` — exact enumeration of a sampler's random choices,
  per-token proper-weighting checks;
* :mod:`~potentia.testing.gof` — χ² goodness of fit and mean tests with an explicit
  false-alarm budget;
* :mod:`~potentia.testing.strategies` — hypothesis strategies for toy LMs and constraints;
* :mod:`~potentia.testing.smc_checks` — rejection-corrected exact draws from SMC runs;
* exact targets of toy problems: :func:`enumerate_target`.
"""

from potentia.models.exact import ExactTarget, enumerate_target
from potentia.testing.enumerate import (
    NoRandomness,
    assert_properly_weighted,
    enumerate_draws,
    sampler_expectations,
)
from potentia.testing.gof import GofResult, assert_gof, assert_mean, chi2_gof, mean_z_test
from potentia.testing.laws import assert_logw_close, assert_potential_laws
from potentia.testing.smc_checks import smc_exact_draws

__all__ = [
    "assert_potential_laws",
    "assert_logw_close",
    "enumerate_draws",
    "sampler_expectations",
    "assert_properly_weighted",
    "NoRandomness",
    "chi2_gof",
    "assert_gof",
    "GofResult",
    "mean_z_test",
    "assert_mean",
    "enumerate_target",
    "ExactTarget",
    "smc_exact_draws",
]
