"""Keyword coverage (CommonGen style) with the search engines on a real embedded LM.

Each instance is a set of ``k`` keywords (:func:`potentia.search.tasks.keyword_instances`);
the LM writes one sentence after a one-shot prompt, ended by a newline (the LM's EOS set
is ``lm.eos_ids + ["\\n"]``). Success: every keyword starts a word of the sentence
(:meth:`Keywords.coverage` = 1). Engines, all at equal LM-token budgets:

* ``greedy``: the greedy sentence (a floor; no budget).
* ``bon``: best-of-N over LM samples, ranked by coverage, then log p; one pool in draw
  order cut at each budget (the same pool for every budget).
* ``astar_lazy``: the lazy A* over words (``unit=" "``, k = 1 word per pop, node
  re-queued), goals = finished sentences with full coverage (a final score
  1{coverage = 1}), g = words so far, h = keywords still missing (admissible: each needs
  a word of its own); the first goal popped is the answer.
* ``smc_reward``: ``pt.sample(..., critic=kw.reward(vocab))`` (ratio mode: the target is
  LM × reward at the end), its MAP text.
* ``smc_hard``: ``pt.sample(..., kw.constraint())``, the hard ``pt.contains`` of every
  keyword (exact target LM × 1{all keywords}); success = some particle finished.

Budgets count every sampled token (EOS included). Ends with
``BENCH search_keywords model=<name> astar_success=<x> bon_success=<x> smc_reward_success=<x> smc_hard_success=<x> greedy_success=<x>``
(success at the largest budget, mean over instances x seeds).

    .venv/bin/python benchmarks/search_keywords.py --model smollm2 --instances 6 --seeds 3
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _report import write_section  # noqa: E402
from search import ci95, smc_tokens, top_text, tree_ctx  # noqa: E402

import potentia as pt  # noqa: E402
from potentia.potentials.base import Potential  # noqa: E402
from potentia.search import Budget, astar, best_of_n  # noqa: E402
from potentia.search.tasks import Keywords, greedy, keyword_instances  # noqa: E402

MODELS = {"smollm2": "SmolLM2 135M Instruct", "gemma": "Gemma 3 270M"}
ENGINES = ["greedy", "bon", "astar_lazy", "smc_reward", "smc_hard"]


class FullCoverage(Potential):
    """Weight 1 on every prefix; 1{every keyword covered} on a finished sentence."""

    def __init__(self, vocab, kw: Keywords) -> None:
        self.vocab, self.kw = vocab, kw

    def _prefix(self, context):
        return 0.0

    def _complete(self, context):
        return 0.0 if self.kw.coverage(self.vocab.decode(context)) == 1.0 else -np.inf


def run(args) -> list[dict]:
    torch.set_num_threads(1)
    lm0 = pt.LM.smollm2() if args.model == "smollm2" else pt.LM.default()
    lm = lm0.with_eos([*lm0.eos_ids, "\n"])
    vocab = lm.vocab
    budgets = sorted(int(b) for b in args.budgets.split(","))
    L = args.max_tokens
    rows: list[dict] = []
    for ti, kw in enumerate(keyword_instances(args.task_seed, args.instances, args.k)):
        t_task = time.perf_counter()
        prompt = kw.prompt()
        base = lm.potential(prompt)

        def add(engine, seed, budget, text, tokens, wall, ok=None, ti=ti, kw=kw):
            cov = kw.coverage(text) if text is not None else 0.0
            rows.append(
                dict(
                    engine=engine, task=ti, seed=seed, budget=budget, tokens=tokens, wall=wall,
                    coverage=cov, ok=float(cov == 1.0 if ok is None else ok), text=text,
                )
            )  # fmt: skip

        if "greedy" in args.engines:
            t0 = time.perf_counter()
            g = vocab.decode(greedy(base, L))
            for seed in range(args.seeds):
                for b in budgets:
                    add("greedy", seed, b, g, 0, time.perf_counter() - t0)
        for seed in range(args.seeds):
            if "bon" in args.engines:
                t0 = time.perf_counter()
                pool = best_of_n(pt.DirectSampler(base), max(budgets) // 4 + 2, L, rng=seed)
                pool_wall = time.perf_counter() - t0
                tree = pool.extra["tree"]
                draws = [
                    (vocab.decode(tree_ctx(tree, i)), tree["logp"][i], len(tree["tokens"][i]))
                    for i in range(1, len(tree["parent"]))
                ]
                for b in budgets:
                    spent, best = 0, None
                    for text, lp, n_tok in draws:
                        if spent + n_tok > b:
                            break
                        spent += n_tok
                        key = (kw.coverage(text), lp)
                        if best is None or key > best[0]:
                            best = (key, text)
                    wall = pool_wall * spent / max(pool.extra["spent"]["lm_tokens"], 1)
                    add("bon", seed, b, best[1] if best else None, spent, wall)
            for b in budgets if "astar_lazy" in args.engines else []:

                def h(c, kw=kw):
                    return float(len(kw.words) - len(kw.covered(vocab.decode(c))))

                t0 = time.perf_counter()
                r = astar(
                    base * FullCoverage(vocab, kw), L, h, expand="lazy", unit=" ", k=1,
                    sampler=pt.DirectSampler(base), rng=seed, g_weight=0.0, step_cost=1.0,
                    budget=Budget(lm_tokens=b),
                )  # fmt: skip
                add("astar_lazy", seed, b, top_text(r), r.extra["spent"]["lm_tokens"],
                    time.perf_counter() - t0)  # fmt: skip
            for b in budgets if "smc_reward" in args.engines else []:
                n = max(2, b // L)
                t0 = time.perf_counter()
                r = pt.sample(
                    lm, prompt, critic=kw.reward(vocab), particles=n, max_tokens=L,
                    seed=seed, progress=False, sampler="direct",
                )  # fmt: skip
                add("smc_reward", seed, b, top_text(r), smc_tokens(r), time.perf_counter() - t0)
            for b in budgets if "smc_hard" in args.engines else []:
                n = max(2, b // L)
                t0 = time.perf_counter()
                r = pt.sample(
                    lm, prompt, kw.constraint(), particles=n, max_tokens=L, seed=seed,
                    progress=False,
                )  # fmt: skip
                add("smc_hard", seed, b, top_text(r), smc_tokens(r), time.perf_counter() - t0)
        print(f"task {ti} {kw.words}: {time.perf_counter() - t_task:.0f}s", file=sys.stderr)
    return rows


def summarise(rows: list[dict], args) -> tuple[str, str]:
    budgets = sorted({r["budget"] for r in rows})
    head = "| engine | " + " | ".join(f"success @{b}" for b in budgets)
    head += f" | coverage @{budgets[-1]} | tokens @{budgets[-1]} | wall s |"
    lines = [head, "|" + "---|" * (len(budgets) + 4)]
    top: dict[str, float] = {}
    for e in [e for e in ENGINES if any(r["engine"] == e for r in rows)]:
        cells = []
        for b in budgets:
            rs = [r for r in rows if r["engine"] == e and r["budget"] == b]
            per_seed = [
                np.mean([r["ok"] for r in rs if r["seed"] == s])
                for s in sorted({r["seed"] for r in rs})
            ]
            m, hw = ci95(per_seed)
            cells.append(f"{m:.2f} ± {hw:.2f}")
            top[e] = m
        last = [r for r in rows if r["engine"] == e and r["budget"] == budgets[-1]]
        cov = np.mean([r["coverage"] for r in last])
        tok = np.mean([r["tokens"] for r in last])
        wall = np.median([r["wall"] for r in last])
        lines.append(f"| {e} | " + " | ".join(cells) + f" | {cov:.2f} | {tok:.0f} | {wall:.2f} |")
    bench = (
        f"BENCH search_keywords model={args.model} "
        + " ".join(f"{e.replace('_lazy', '')}_success={top.get(e, float('nan')):.3f}" for e in
                   ["astar_lazy", "bon", "smc_reward", "smc_hard", "greedy"])
    )  # fmt: skip
    return "\n".join(lines), bench


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=list(MODELS), default="smollm2")
    ap.add_argument("--instances", type=int, default=6)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--k", type=int, default=3, help="keywords per instance")
    ap.add_argument("--task-seed", type=int, default=0)
    ap.add_argument("--budgets", default="48,96,192")
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--no-write", action="store_true", help="do not touch docs/benchmarks.md")
    args = ap.parse_args()
    args.engines = args.engines.split(",")
    t0 = time.perf_counter()
    rows = run(args)
    table, bench = summarise(rows, args)
    example = next((r for r in rows if r["engine"] == "astar_lazy" and r["ok"]), None)
    text = (
        f"## Keyword coverage search, {MODELS[args.model]} (issue 12)\n\n"
        f"`HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/search_keywords.py {' '.join(sys.argv[1:])}`"
        f" — {args.instances} instances of {args.k} keywords, {args.seeds} seeds, sentences of at "
        f"most {args.max_tokens} tokens ended by a newline, 1 torch thread; total wall time "
        f"{time.perf_counter() - t0:.0f} s on a shared 2-core machine.\n\n"
        + table
        + "\n\nSuccess: every keyword starts a word of the answer (mean over instances, ± the 95 % "
        "t interval over seeds). `smc_hard` samples LM × 1{all keywords} exactly, so its "
        "success is whether any particle finished within `max_tokens`; `smc_reward` is the MAP "
        "text of SMC with the coverage reward as a ratio critic. Tokens: every sampled token.\n"
        + (f"\nAn A* answer: `{example['text']!r}`.\n" if example else "")
        + f"\n`{bench}`\n"
    )
    print(text)
    if not args.no_write:
        write_section(f"search_keywords_{args.model}", text)
    print(bench)


if __name__ == "__main__":
    main()
