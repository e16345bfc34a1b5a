"""ASAp, CARS, LCD and SMC converging to the exact grammar-constrained distribution.

Part A (exact): the GAD grammars ``binary_len_5_0`` and ``binary_len_5_1`` (17 strings
each), prompt "Generate a binary string of length 5", Gemma 3 270M and SmolLM2 135M. The
exact target over token sequences comes from :func:`potentia.models.finite.exact_finite_target`
(every tokenization of every string, scored by the LM); KL(empirical ‖ exact) over strings is
reported after 100, 200, 500, 1,000 and 2,000 samples for LCD (mask and renormalise), ASAp,
CARS (exact rejection), SMC with the learned θ twist (10 particles a run, runs pooled by Ẑ)
and AWRS-SMC (10 particles a run; fewer samples, it pays an LM row per particle and step).

LM calls. Each trie-based method has its own trie and counts one LM call per node it
expands (a prefix cache: what that method alone would pay). To keep the run short the LM
rows themselves are served from one shared reference trie filled by the exact-target pass
(the methods' own LM-call counts are unaffected). AWRS-SMC runs on the real LM; its count is
the number of LM rows its forwards computed.

Part B (no exact target): three SLIA and three BV4 grammars with their few-shot prompts, on
SmolLM2: KL against the target renormalised over the union of the strings all methods
observed (the GAD paper's method) and valid samples per LM call.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/asap_convergence.py [--quick] [--no-write]
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import gc  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _report import write_section  # noqa: E402

from potentia.asap.asap import CARS, LCD, ASAp, Trie, twisted_smc  # noqa: E402
from potentia.constraints.cfg import cfg  # noqa: E402
from potentia.lm import LM  # noqa: E402
from potentia.models.finite import exact_finite_target  # noqa: E402
from potentia.potentials.base import Potential  # noqa: E402
from potentia.samplers.awrs import AWRS  # noqa: E402
from potentia.smc import smc  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GRAMMARS = Path("/work/shared/data/grammars")
PROMPT = "Generate a binary string of length 5"
CHECKPOINTS = [100, 200, 500, 1000, 2000]
SLIA = ["lastname", "name-combine-2_short", "firstname_small"]
BV4 = ["find_inv_eq_bvlshr0_4bit", "find_inv_ne_bvudiv1_4bit", "find_inv_bvsge_bvnot_4bit"]


class TrieBackedLM(Potential):
    """The LM's rows restricted to the constraint's allowed tokens, read from a shared trie.

    A miss expands the reference trie (a real LM call, counted by ``ref.lm_calls``).
    """

    def __init__(self, ref: Trie) -> None:
        self.ref, self.vocab = ref, ref.vocab

    def _walk(self, context: list[int]) -> tuple[object, float]:
        n, total = self.ref.root, 0.0
        for t in context:
            self.ref.expand(n)
            k = n.find(t)
            if k < 0:
                return None, -np.inf
            total += float(n.logp[k])
            n = self.ref.child(n, t)
        self.ref.expand(n)
        return n, total

    def _prefix(self, context: list[int]) -> float:
        return self._walk(context)[1]

    def _complete(self, context: list[int]) -> float:
        n, total = self._walk(context)
        if n is None or not len(n.tokens) or n.tokens[-1] != len(self.vocab):
            return -np.inf
        return total + float(n.logp[-1])

    def _logw_next(self, context: list[int]) -> np.ndarray:
        out = np.full(len(self.vocab) + 1, -np.inf)
        n, _ = self._walk(context)
        if n is not None:
            out[n.tokens] = n.logp
        return out


def kl(p: dict, q: dict) -> float:
    """KL(p ‖ q) in nats (p's support must lie in q's)."""
    return float(sum(v * np.log(v / q[k]) for k, v in p.items() if v > 0))


def empirical(items) -> dict:
    out: dict = defaultdict(float)
    for x in items:
        out[x] += 1.0
    n = sum(out.values())
    return {k: v / n for k, v in out.items()}


def pooled_smc(results) -> dict:
    """Runs pooled by Ẑ: Σ_r Ẑ_r p̂_r / Σ_r Ẑ_r over decoded strings."""
    lz = np.array([r.log_z for r in results])
    ok = lz > -np.inf
    if not ok.any():
        return {}
    wr = np.exp(lz[ok] - lz[ok].max())
    out: dict = defaultdict(float)
    for w, r in zip(wr, [r for r, o in zip(results, ok) if o]):
        for t, p in r.posterior.items():
            out[t.encode()] += w * p
    tot = sum(out.values())
    return {k: v / tot for k, v in out.items()}


class RowCounter:
    """Counts LM rows: the score rows the backend returned (``lm.backend.stats.rows``,
    one per distinct context forwarded), on any backend."""

    def __init__(self, lm: LM) -> None:
        self.stats = lm.backend.stats

    @property
    def rows(self) -> int:
        return self.stats.rows


def part_a(lm: LM, counter: RowCounter, grammar: str, awrs_samples: int, quick: bool) -> dict:
    g = cfg((GRAMMARS / "gad-examples" / f"{grammar}.ebnf").read_text())
    c = g.lift(lm.vocab)
    pot = lm.potential(PROMPT)
    max_tokens = 8
    ref = Trie(pot, c, max_tokens=max_tokens, max_states=64)

    def fill(prefix, row):
        n = ref.root
        for t in prefix:
            n = ref.child(n, t)
        ref.record(n, row, c.logw_next(list(prefix)))

    t0 = time.perf_counter()
    exact = exact_finite_target(pot, g, on_row=fill)
    t_exact = time.perf_counter() - t0
    target = exact.string_posterior()
    cached = TrieBackedLM(ref)
    calls_ref = ref.lm_calls
    checkpoints = [n for n in CHECKPOINTS if not quick or n <= 200]
    out = {"exact": exact, "t_exact": t_exact, "kl": {}, "calls": {}, "extra": {}}
    rng = np.random.default_rng(0)
    for name, cls in (("lcd", LCD), ("asap", ASAp), ("cars", CARS)):
        m = cls(cached, c, max_tokens=max_tokens)
        draws, kls, calls, accept, window, attempts = [], [], [], [], [], 0
        for n in checkpoints:
            r = m.sample(n - len(draws), rng)
            attempts += r.extra["attempts"]
            draws += [lm.vocab.decode_bytes(x) for x in r.contexts]
            kls.append(kl(empirical(draws), target))
            calls.append(m.trie.lm_calls)
            if name == "cars":
                accept.append(len(draws) / max(m.trie.lm_calls, 1))
                window.append(len(r.contexts) / max(r.extra["attempts"], 1))
        out["kl"][name], out["calls"][name] = kls, calls
        if name == "cars":
            out["extra"]["cars_accept_per_call"] = accept
            out["extra"]["cars_attempts"] = attempts
            out["extra"]["cars_window_accept"] = window
    # SMC with the learned θ twist: 10 particles a run, the trie learns between runs
    tw = Trie(cached, c, max_tokens=max_tokens)
    runs, kls, calls = [], [], []
    for n in checkpoints:
        while len(runs) * 10 < n:
            runs.append(twisted_smc(tw, 10, rng))
        kls.append(kl(pooled_smc(runs), target))
        calls.append(tw.lm_calls)
    out["kl"]["twisted_smc"], out["calls"]["twisted_smc"] = kls, calls
    out["extra"]["twisted_ess"] = float(np.mean([r.ess for r in runs[-20:]]))
    # AWRS-SMC on the real LM
    sampler = AWRS(pot, c)
    runs, kls, calls = [], [], []
    rows0 = counter.rows
    for n in [k for k in checkpoints if k <= awrs_samples]:
        while len(runs) * 10 < n:
            runs.append(smc(sampler, 10, max_tokens, rng))
        kls.append(kl(pooled_smc(runs), target))
        calls.append(counter.rows - rows0)
    out["kl"]["awrs_smc"], out["calls"]["awrs_smc"] = kls, calls
    out["extra"]["awrs_ess"] = float(np.mean([r.ess for r in runs])) if runs else float("nan")
    out["extra"]["lcd_bias"] = None
    out["extra"]["ref_misses"] = ref.lm_calls - calls_ref
    out["checkpoints"] = checkpoints
    # LCD's exact bias: its own distribution over strings, from the fully expanded trie
    out["extra"]["lcd_bias"] = kl(lcd_distribution(ref), target)
    return out


def lcd_distribution(ref: Trie) -> dict:
    """LCD's exact distribution over strings (renormalise P over allowed tokens, recurse)."""
    V = len(ref.vocab)
    out: dict = defaultdict(float)
    stack = [(ref.root, 0.0)]
    while stack:
        n, lp = stack.pop()
        if not n.expanded or not len(n.tokens):
            continue
        local = n.logp - np.logaddexp.reduce(n.logp)
        for t, q in zip(n.tokens, local):
            if t == V:
                out[ref.vocab.decode_bytes(n.context)] += float(np.exp(lp + q))
            elif int(t) in n.children:
                stack.append((n.children[int(t)], lp + q))
    return dict(out)


def part_b(lm: LM, names: list[tuple[str, str]], n_samples: int, max_tokens: int) -> list[dict]:
    rows = []
    for folder, name in names:
        g = cfg((GRAMMARS / folder / f"{name}.ebnf").read_text(), undefined_rules="empty")
        c = g.lift(lm.vocab)
        prompt = (GRAMMARS / folder / f"{name}.txt").read_text()
        pot = lm.potential(prompt)
        t0 = time.perf_counter()
        ref = Trie(pot, c, max_tokens=max_tokens, max_states=4)
        cached = TrieBackedLM(ref)
        rng = np.random.default_rng(0)
        samples, calls, fails = {}, {}, {}
        for mname, cls in (("lcd", LCD), ("asap", ASAp), ("cars", CARS)):
            m = cls(cached, c, max_tokens=max_tokens)
            r = m.sample(n_samples, rng, max_attempts=5 * n_samples)
            samples[mname] = [tuple(x) for x in r.contexts]
            calls[mname] = m.trie.lm_calls
            fails[mname] = sum(r.extra["failures"].values())
        union = {x for v in samples.values() for x in v}
        logp = {x: cached.complete(list(x)) for x in union}
        z = np.logaddexp.reduce(np.array(list(logp.values())))
        target = {x: float(np.exp(v - z)) for x, v in logp.items()}
        row = {"grammar": f"{folder}/{name}", "union": len(union), "ref_calls": ref.lm_calls}
        for mname, xs in samples.items():
            row[mname] = (kl(empirical(xs), target) if xs else float("nan"), len(xs), calls[mname])
        row["wall"] = time.perf_counter() - t0
        row["example"] = lm.vocab.decode(max(target, key=target.get))
        rows.append(row)
        del ref, cached
        gc.collect()
        print(
            f"  {folder}/{name}: union {len(union)}, ref LM calls {row['ref_calls']}, "
            f"{row['wall']:.0f}s; "
            + ", ".join(
                f"{k} KL {v[0]:.3f} ({v[1]} samples, {v[2]} calls)"
                for k, v in row.items()
                if isinstance(v, tuple)
            ),
            flush=True,
        )
    return rows


def render(results: dict, part_b_rows: list[dict], cmd: str, backends: str = "") -> str:
    lines = [
        "## ASAp convergence to the exact grammar-constrained distribution",
        "",
        f"Command: `{cmd}` (1 thread; {backends}). Prompt: {PROMPT!r}. KL(empirical ‖ exact) in nats "
        "over the 17 strings; LM calls in parentheses (trie methods: prefixes expanded by "
        "that method's own trie; AWRS-SMC: LM rows forwarded). SMC: 10 particles a run, runs "
        "pooled by Ẑ. LCD bias: KL of LCD's own exact distribution.",
        "",
    ]
    for (model, grammar), r in results.items():
        cps = r["checkpoints"]
        lines += [
            f"### {model}, `{grammar}`",
            "",
            f"Exact target: {len(r['exact'].log_weights)} token sequences, "
            f"{r['exact'].lm_calls} LM calls ({r['t_exact']:.0f}s); Z = {np.exp(r['exact'].log_z):.3g}; "
            f"LCD exact bias = {r['extra']['lcd_bias']:.4f} nats; "
            f"CARS attempts = {r['extra']['cars_attempts']}; "
            f"ESS/N last twisted runs = {r['extra']['twisted_ess'] / 10:.2f}, "
            f"AWRS-SMC = {r['extra']['awrs_ess'] / 10:.2f}.",
            "",
            "| method | " + " | ".join(f"n={n}" for n in cps) + " |",
            "|---" * (len(cps) + 1) + "|",
        ]
        for m in ("lcd", "asap", "cars", "twisted_smc", "awrs_smc"):
            kls, calls = r["kl"][m], r["calls"][m]
            cells = [f"{k:.4f} ({c})" for k, c in zip(kls, calls)]
            cells += ["—"] * (len(cps) - len(cells))
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        acc = r["extra"]["cars_accept_per_call"]
        lines += [
            "",
            "CARS accepted samples per LM call (cumulative): "
            + ", ".join(f"n={n}: {a:.2f}" for n, a in zip(cps, acc)),
            "",
            "CARS acceptance per attempt, in each window of samples: "
            + ", ".join(
                f"{lo}–{n}: {a:.3f}"
                for lo, n, a in zip([0] + cps[:-1], cps, r["extra"]["cars_window_accept"])
            ),
            "",
        ]
    if part_b_rows:
        lines += [
            "### SLIA / BV4 (SmolLM2): KL against the target renormalised over observed strings",
            "",
            "| grammar | observed | LCD KL (samples, calls) | ASAp KL | CARS KL | most likely observed |",
            "|---|---|---|---|---|---|",
        ]
        for row in part_b_rows:
            cells = [
                f"{row[m][0]:.3f} ({row[m][1]}, {row[m][2]}; {row[m][1] / max(row[m][2], 1):.3f}/call)"
                for m in ("lcd", "asap", "cars")
            ]
            lines.append(
                f"| {row['grammar']} | {row['union']} | "
                + " | ".join(cells)
                + f" | `{row['example'][:60]}` |"
            )
        lines.append("")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, ((model, grammar), r) in zip(axes, results.items()):
        for m, style in (
            ("lcd", "k--"),
            ("asap", "C0-o"),
            ("cars", "C1-s"),
            ("twisted_smc", "C2-^"),
            ("awrs_smc", "C3-v"),
        ):
            k = r["kl"][m]
            ax.plot(r["checkpoints"][: len(k)], np.maximum(k, 1e-5), style, label=m, ms=4)
        ax.axhline(r["extra"]["lcd_bias"], color="gray", lw=0.8, ls=":", label="LCD exact bias")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{model}\n{grammar}", fontsize=9)
        ax.set_xlabel("samples")
    axes[0].set_ylabel("KL(empirical ‖ exact), nats")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="Gemma, binary_len_5_0, 200 samples")
    ap.add_argument("--no-write", action="store_true", help="do not touch docs/")
    ap.add_argument("--awrs-samples", type=int, default=200)
    ap.add_argument("--b-samples", type=int, default=30)
    ap.add_argument("--b-max-tokens", type=int, default=48)
    ap.add_argument("--skip-b", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    models = [("Gemma 3 270M", LM.default)] + ([] if args.quick else [("SmolLM2 135M", LM.smollm2)])
    grammars = ["binary_len_5_0"] + ([] if args.quick else ["binary_len_5_1"])
    results, smol, used = {}, None, []
    for mname, load in models:
        lm = load()
        used.append(f"{mname}: {lm.backend!r}")
        counter = RowCounter(lm)
        if "Smol" in mname:
            smol = lm
        for g in grammars:
            r = part_a(lm, counter, g, args.awrs_samples, args.quick)
            gc.collect()  # the tries are cyclic (parent <-> children): free them now
            results[(mname, g)] = r
            last = {m: f"{v[-1]:.4f}" for m, v in r["kl"].items()}
            print(
                f"{mname} {g}: KL at n={r['checkpoints'][-1]}: {last}; calls {dict((m, v[-1]) for m, v in r['calls'].items())}; {time.perf_counter() - t0:.0f}s",
                flush=True,
            )
    rows = []
    if not args.skip_b and not args.quick:
        names = [("SLIA", n) for n in SLIA] + [("BV4", n) for n in BV4]
        rows = part_b(smol or LM.smollm2(), names, args.b_samples, args.b_max_tokens)
    cmd = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/asap_convergence.py " + " ".join(
        sys.argv[1:]
    )
    text = render(results, rows, cmd.strip(), ", ".join(used))
    print(text)
    if not args.no_write:
        write_section("asap", text + f"\nTotal wall time {time.perf_counter() - t0:.0f}s.\n")
        plot(results, ROOT / "docs" / "asap_kl.png")
    g0 = results[("Gemma 3 270M", "binary_len_5_0")]
    i = len(g0["checkpoints"]) - 1
    print(
        f"BENCH asap kl_asap_2000={g0['kl']['asap'][i]:.4f} kl_lcd_2000={g0['kl']['lcd'][i]:.4f} "
        f"kl_cars_2000={g0['kl']['cars'][i]:.4f} kl_twisted_smc_2000={g0['kl']['twisted_smc'][i]:.4f} "
        f"lm_calls_asap={g0['calls']['asap'][i]} "
        f"cars_accept_per_call={g0['extra']['cars_accept_per_call'][i]:.3f}"
    )


if __name__ == "__main__":
    main()
