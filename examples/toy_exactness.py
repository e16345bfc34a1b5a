"""Check an SMC run against the exact target on a toy problem (no real model needed).

Run: .venv/bin/python examples/toy_exactness.py
"""

import numpy as np

import potentia as pt
from potentia.models import DFA, ToyLM, enumerate_target, random_ngram
from potentia.potentials import Vocabulary
from potentia.smc import smc
from potentia.testing import assert_gof, assert_mean, smc_exact_draws


def main(runs: int = 300) -> None:
    vocab = Vocabulary([b"a", b"b", b"c"])
    model = ToyLM(random_ngram(np.random.default_rng(0), vocab, order=2, smoothing=0.2))
    # strings over {a, b, c} with at least one "a" and no "c" after the first "a"
    dfa = DFA(vocab, np.array([[1, 0, 0], [1, 1, -1]]), accepting=[1])
    lm = model.potential("b")

    exact = enumerate_target(lm * dfa, max_len=4)
    out = pt.sample(model, "b", dfa, particles=16, max_tokens=4, seed=0, progress=False)
    print(out.summary())
    print(f"exact log Z = {exact.log_z:.4f}")

    # Ẑ is unbiased: average exp(log Ẑ) over independent runs
    sampler = pt.DirectSampler(lm * dfa)
    results = [smc(sampler, 8, 4, rng=s) for s in range(runs)]
    zs = [np.exp(r.log_z) for r in results]
    z = assert_mean(zs, np.exp(exact.log_z), sigmas=4.0, resolution=np.exp(exact.log_z) / runs)
    print(f"mean Ẑ = {np.mean(zs):.5f} vs Z = {np.exp(exact.log_z):.5f} ({z:+.2f} s.e.)")

    # rejection-corrected draws are exact posterior samples: χ² against the exact posterior
    draws = smc_exact_draws(results, np.random.default_rng(1))
    res = assert_gof(draws, exact.posterior, false_alarm=1e-3)
    print(f"χ² on {len(draws)} exact draws: p = {res.p_value:.3f} (budget 1e-3)")


if __name__ == "__main__":
    main()
