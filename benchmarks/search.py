r"""Search engines on Countdown at equal LM-token budgets (SmolLM2 135M, one thread).

Task: :mod:`potentia.search.tasks` Countdown instances (seeded), solutions of lines
``"a+b=c\n"``; every engine proposes from ``LM × moves`` (the move constraint lifted to
the LM's vocabulary), so every proposal is a legal move and the engines differ only in
how they spend tokens and use the PRM. A PRM ``r(steps)`` is one of

* ``exact``: the exact value function (1 if the target is still reachable, else 0),
* ``noisy``: the value function flipped with probability 0.25 per state (r = 0.9 / 0.1),
* ``judge``: SmolLM2 itself as an LM judge, P(" Yes") / (P(" Yes") + P(" No")).

Engines (all budgets in LM tokens, every sampled or scored token counted):

* ``astar``: A*-decoding as in the paper, ``astar(LM × moves × R_goal, h = 1 - r,
  expand="sample", unit="\n", k=K)`` with proposals from ``LM × moves``: g = -log p(x),
  h = 1 - r(closed steps) on open nodes, and ``R_goal`` multiplies r of the finished
  solution into a goal's weight (the PRM scores the goal; r = 0 removes it).
* ``astar_lazy``: the lazy (partial-expansion) A*, ``astar(LM × moves × R_goal,
  h = -log r, expand="lazy", k=--lazy-k, g_weight=0, step_cost=1)`` (g = steps: the LM
  only proposes, the search wants any accepted solution, not the likeliest) and
  h = -log r + the steps still needed (lines left + EOS; every solution has n-1 lines),
  so with the exact PRM h is the exact cost-to-go of a solvable node: each pop samples ``--lazy-k`` steps and puts
  the node back with the cheapest cost an unseen step could have, so a node whose steps
  were all pruned is sampled again instead of being a dead end, and no token is spent on
  children that are never expanded; h = -log r is in nats like g (r = 0 prunes).
* ``astar_ratio``: A* with the PRM as a ratio-mode critic in the target,
  ``LM × moves × PRM_ratio`` and h = 0, so f = -log p(x) - log r(x); r = 0 prunes a node
  (a node whose k sampled children are all pruned is a dead end: nodes are expanded once).
* ``bon``: best-of-N from ``LM × moves``, ranked by r of the finished solution (then by
  log p). One pool of draws per (instance, seed) is cut at each budget in draw order
  (the sequential best-of-N that budget buys).
* ``smc_ratio`` / ``smc_product``: ``pt.sample(..., critic=PRM)`` with the PRM in
  ``ratio`` mode (target LM·r(x)) and in ``product`` mode (target LM·Π_j r(x_{1:j}),
  particle filtering with a PRM); N = budget // (mean solution length in tokens);
  ``--smc-unit`` resamples only at step boundaries (``unit="\n"``). The answer is the
  highest-posterior text.
* ``beam``: plain token beam search on ``LM × moves`` (no PRM); deterministic, so each
  width of ``--beam-widths`` runs once and a budget gets the widest run that fits.
* ``deal``: DeAL on ``LM × moves`` with reward log r of the greedy lookahead
  (``--lookahead`` tokens), widths ``--deal-widths``, the widest run that fits.
* floors: ``greedy`` (argmax decoding of ``LM × moves``) and ``random`` (uniform legal
  moves, exact success probability).

Success: the engine's top answer passes the Python verifier. 95 % intervals: per seed,
the success rate over instances; the interval is over seeds (t distribution).

    .venv/bin/python benchmarks/search.py --instances 8 --seeds 3 --budgets 48,96,192,384

Ends with ``BENCH search astar_tokens_ratio_vs_bon=... astar_success=... bon_success=...
smc_success=...``: the ratio is best-of-N's mean tokens over A*'s at the smallest budgets
where each reaches best-of-N's success at the largest budget (exact PRM); ``0`` when A*
never does. Successes are at the largest budget with the exact PRM.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _report import write_section  # noqa: E402
from scipy import stats  # noqa: E402

import potentia as pt  # noqa: E402
from potentia.potentials.base import Potential  # noqa: E402
from potentia.search import Budget, astar, beam_search, best_of_n, deal  # noqa: E402
from potentia.search.tasks import countdown_instances, greedy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ["astar", "astar_lazy", "astar_ratio", "bon", "smc_ratio", "smc_product", "beam", "deal"]


def ci95(xs: list[float]) -> tuple[float, float]:
    """Mean and half-width of a 95 % t interval."""
    m = float(np.mean(xs))
    if len(xs) < 2:
        return m, float("nan")
    return m, float(stats.t.ppf(0.975, len(xs) - 1) * np.std(xs, ddof=1) / np.sqrt(len(xs)))


def top_text(res) -> str | None:
    """The engine's answer: the first text of a search, the MAP text of SMC."""
    if res.method.startswith(("astar", "beam", "deal", "bon")):
        return res.texts[0] if res.texts else None
    post = res.posterior
    return max(post, key=post.get) if post else None


class CountedScorer:
    """A PRM over step texts, cached per step list; ``calls`` counts the distinct lists."""

    def __init__(self, score) -> None:
        self.score, self.cache = score, {}

    @property
    def calls(self) -> int:
        return len(self.cache)

    def __call__(self, steps: list[str]) -> float:
        key = tuple(steps)
        if key not in self.cache:
            self.cache[key] = float(self.score(list(steps)))
        return self.cache[key]


class FinalScore(Potential):
    """Weight 1 on every prefix, r(steps) on a finished string (the PRM scores the goal)."""

    def __init__(self, vocab, scorer: CountedScorer) -> None:
        self.vocab, self.scorer = vocab, scorer

    def _prefix(self, context):
        return 0.0

    def _complete(self, context):
        r = self.scorer(self.vocab.decode(context).splitlines(keepends=True))
        return float(np.log(r)) if r > 0 else -np.inf


def closed_steps(vocab, ctx) -> list[str]:
    """The finished lines of a context."""
    return [s for s in vocab.decode(ctx).splitlines(keepends=True) if s.endswith("\n")]


def smc_tokens(res) -> int:
    """Tokens SMC sampled: every particle's tokens, EOS included."""
    return int(sum(len(c) + (s == "finished") for c, s in zip(res.contexts, res.status)))


T0 = time.perf_counter()
MODELS = {"smollm2": "SmolLM2 135M Instruct", "gemma": "Gemma 3 270M"}
TITLE = {"smollm2": "", "gemma": ", Gemma 3 270M"}


def run(args) -> dict:
    torch.set_num_threads(1)
    lm = pt.LM.smollm2() if args.model == "smollm2" else pt.LM.default()
    vocab = lm.vocab
    tasks = countdown_instances(args.task_seed, args.instances, args.numbers)
    budgets = sorted(int(b) for b in args.budgets.split(","))
    rows: list[dict] = []  # one per (engine, scorer, task, seed, budget)
    floors = {"greedy": [], "random": []}

    def add(engine, scorer, ti, seed, budget, ok, tokens, calls, wall, first=None):
        rows.append(
            dict(
                engine=engine, scorer=scorer, task=ti, seed=seed, budget=budget, ok=float(ok),
                tokens=tokens, calls=calls, wall=wall, first=first,
            )
        )  # fmt: skip

    for ti, task in enumerate(tasks):
        t_task = time.perf_counter()
        prompt = task.prompt()
        lmp = lm.potential(prompt)
        moves = task.constraint().lift(vocab)
        base = lmp * moves
        L = 10 * task.max_lines + 2
        g = vocab.decode(greedy(base, L))
        floors["greedy"].append(float(task.verify(g)))
        floors["random"].append(task.random_success())
        scorers = [s for s in args.scorers.split(",") if s != "judge" or ti < args.judge_instances]

        def prm(kind, mode="ratio", task=task):
            return task.prm(vocab, kind, mode=mode, judge=lm if kind == "judge" else None)

        # beam: deterministic and PRM-free; one run per width
        beam_runs = []
        for w in args.beam_widths if "beam" in args.engines else []:
            t0 = time.perf_counter()
            r = beam_search(base, L, w)
            beam_runs.append((r.extra["spent"]["lm_tokens"], top_text(r), time.perf_counter() - t0))
        for kind in scorers if "beam" in args.engines else []:
            for b in budgets:
                fit = [x for x in beam_runs if x[0] <= b]
                tok, txt, wall = fit[-1] if fit else (0, None, 0.0)
                for seed in range(args.seeds):
                    ok = txt is not None and task.verify(txt)
                    add("beam", kind, ti, seed, b, ok, tok, 0, wall, tok if ok else None)
        # DeAL: deterministic given the PRM; one run per width
        for kind in scorers if "deal" in args.engines else []:
            deal_runs = []
            for w in args.deal_widths:
                score = task.scorer(kind, judge=lm if kind == "judge" else None)
                calls = [0]

                def reward(ctx, score=score, calls=calls):
                    calls[0] += 1
                    text = vocab.decode(ctx)
                    steps = text.splitlines(keepends=True)
                    closed = [s for s in steps if s.endswith("\n")]
                    r = score(closed)
                    return float(np.log(r)) if r > 0 else -1e9

                t0 = time.perf_counter()
                r = deal(base, L, w, reward, lookahead=args.lookahead, weight=1.0)
                deal_runs.append(
                    (r.extra["spent"]["lm_tokens"], top_text(r), time.perf_counter() - t0, calls[0])
                )
            for b in budgets:
                fit = [x for x in deal_runs if x[0] <= b]
                tok, txt, wall, c = fit[-1] if fit else (0, None, 0.0, 0)
                for seed in range(args.seeds):
                    ok = txt is not None and task.verify(txt)
                    add("deal", kind, ti, seed, b, ok, tok, c, wall, tok if ok else None)
        for seed in range(args.seeds):
            # best-of-N: one pool in draw order, cut at each budget
            n_pool = max(budgets) // (5 * task.max_lines) + 2
            t0 = time.perf_counter()
            pool = best_of_n(pt.DirectSampler(base), n_pool, L, rng=seed)
            pool_wall = time.perf_counter() - t0
            tree = pool.extra["tree"]
            draws = [
                (vocab.decode(tree_ctx(tree, i)), tree["logp"][i], len(tree["tokens"][i]))
                for i in range(1, len(tree["parent"]))
            ]
            mean_len = statistics.mean(d[2] for d in draws) if draws else float(L)
            for kind in scorers:
                score = task.scorer(kind, judge=lm if kind == "judge" else None)
                cache: dict[str, float] = {}
                for b in budgets:
                    spent, best, first = 0, None, None
                    t0 = time.perf_counter()
                    for text, lp, n_tok in draws:
                        if spent + n_tok > b:
                            break
                        spent += n_tok
                        if text not in cache:
                            cache[text] = score(text.splitlines(keepends=True))
                        key = (cache[text], lp)
                        if best is None or key > best[0]:
                            best = (key, text)
                        if first is None and task.verify(text):
                            first = spent
                    ok = best is not None and task.verify(best[1])
                    wall = pool_wall * spent / max(pool.extra["spent"]["lm_tokens"], 1)
                    add(
                        "bon",
                        kind,
                        ti,
                        seed,
                        b,
                        ok,
                        spent,
                        len(cache),
                        wall + time.perf_counter() - t0,
                        first,
                    )
                # A*-decoding as in the paper: h = 1 - r on open nodes, r scores the goal
                for b in budgets if "astar" in args.engines else []:
                    sc = CountedScorer(task.scorer(kind, judge=lm if kind == "judge" else None))
                    t0 = time.perf_counter()
                    r = astar(
                        base * FinalScore(vocab, sc), L, lambda c, sc=sc: 1.0 - sc(closed_steps(vocab, c)),
                        expand="sample", unit="\n", k=args.k, sampler=pt.DirectSampler(base),
                        rng=seed, budget=Budget(lm_tokens=b),
                    )  # fmt: skip
                    txt = top_text(r)
                    ok = txt is not None and task.verify(txt)
                    tok = r.extra["spent"]["lm_tokens"]
                    add(
                        "astar",
                        kind,
                        ti,
                        seed,
                        b,
                        ok,
                        tok,
                        sc.calls,
                        time.perf_counter() - t0,
                        tok if ok else None,
                    )
                # lazy A*: k units per pop, node re-queued; h = -log r (r = 0 prunes)
                for b in budgets if "astar_lazy" in args.engines else []:
                    sc = CountedScorer(task.scorer(kind, judge=lm if kind == "judge" else None))

                    def h_log(c, sc=sc, task=task):
                        done = closed_steps(vocab, c)
                        r_ = sc(done)  # + the steps still needed: lines left, then EOS
                        left = task.max_lines - len(done) + 1
                        return float(-np.log(r_)) + left if r_ > 0 else np.inf

                    t0 = time.perf_counter()
                    r = astar(
                        base * FinalScore(vocab, sc), L, h_log, expand="lazy", unit="\n",
                        k=args.lazy_k, sampler=pt.DirectSampler(base), rng=seed, g_weight=0.0, step_cost=1.0,
                        budget=Budget(lm_tokens=b),
                    )  # fmt: skip
                    txt = top_text(r)
                    ok = txt is not None and task.verify(txt)
                    tok = r.extra["spent"]["lm_tokens"]
                    add("astar_lazy", kind, ti, seed, b, ok, tok, sc.calls,
                        time.perf_counter() - t0, tok if ok else None)  # fmt: skip
                # A* with the PRM as a ratio critic: f = -log p - log r (r = 0 prunes)
                for b in budgets if "astar_ratio" in args.engines else []:
                    p = prm(kind)
                    t0 = time.perf_counter()
                    r = astar(
                        base * p, L, expand="sample", unit="\n", k=args.k,
                        sampler=pt.DirectSampler(base), rng=seed, budget=Budget(lm_tokens=b),
                    )  # fmt: skip
                    txt = top_text(r)
                    ok = txt is not None and task.verify(txt)
                    tok = r.extra["spent"]["lm_tokens"]
                    add(
                        "astar_ratio",
                        kind,
                        ti,
                        seed,
                        b,
                        ok,
                        tok,
                        p.calls,
                        time.perf_counter() - t0,
                        tok if ok else None,
                    )
                # SMC with the PRM as a critic, both modes
                for mode in ("ratio", "product"):
                    for b in budgets if f"smc_{mode}" in args.engines else []:
                        n = max(2, int(b // mean_len))
                        p = prm(kind, mode)
                        t0 = time.perf_counter()
                        r = pt.sample(
                            lm, prompt, moves, sampler="direct", critic=p, particles=n,
                            max_tokens=L, seed=seed, progress=False,
                            unit="\n" if args.smc_unit else None,
                        )  # fmt: skip
                        txt = top_text(r)
                        ok = txt is not None and task.verify(txt)
                        tok = smc_tokens(r)
                        add(
                            f"smc_{mode}",
                            kind,
                            ti,
                            seed,
                            b,
                            ok,
                            tok,
                            p.calls,
                            time.perf_counter() - t0,
                            tok if ok else None,
                        )
        print(
            f"task {ti} {task.numbers}->{task.target}: {time.perf_counter() - t_task:.0f}s",
            file=sys.stderr,
            flush=True,
        )
        if args.rows:  # partial results after every instance (see --from-rows)
            done = tasks[: ti + 1]
            Path(args.rows).write_text(
                json.dumps({"rows": rows, "floors": floors, "budgets": budgets,
                            "tasks": [[list(t.numbers), t.target] for t in done],
                            "argv": sys.argv[1:], "wall": time.perf_counter() - T0})
            )  # fmt: skip
    return {"rows": rows, "floors": floors, "budgets": budgets, "tasks": tasks}


def tree_ctx(tree: dict, node: int) -> list[int]:
    """A best-of-N draw's tokens (one child of the root; EOS dropped)."""
    toks = tree["tokens"][node]
    return toks[:-1] if tree["goal"][node] else toks


def summarise(out: dict, args) -> tuple[str, str]:
    rows, budgets = out["rows"], out["budgets"]
    scorers = list(dict.fromkeys(r["scorer"] for r in rows))
    lines = []
    head = "| engine | PRM | " + " | ".join(f"success @{b}" for b in budgets)
    head += f" | tokens @{budgets[-1]} | tokens to first correct | PRM calls | wall s |"
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    summary: dict = {}
    for kind in scorers:
        for eng in ENGINES:
            sel = [r for r in rows if r["engine"] == eng and r["scorer"] == kind]
            if not sel:
                continue
            cells = []
            for b in budgets:
                per_seed = {}
                for r in sel:
                    if r["budget"] == b:
                        per_seed.setdefault(r["seed"], []).append(r["ok"])
                m, h = ci95([float(np.mean(v)) for v in per_seed.values()])
                toks = float(np.mean([r["tokens"] for r in sel if r["budget"] == b]))
                summary[(eng, kind, b)] = (m, h, toks)
                cells.append(f"{m:.2f} ± {h:.2f}" if h == h else f"{m:.2f}")
            last = [r for r in sel if r["budget"] == budgets[-1]]
            firsts = [r["first"] for r in last if r["first"] is not None]
            lines.append(
                f"| {eng} | {kind} | " + " | ".join(cells)
                + f" | {np.mean([r['tokens'] for r in last]):.0f}"
                + f" | {statistics.median(firsts) if firsts else float('nan'):.0f}"
                + f" | {np.mean([r['calls'] for r in last]):.1f}"
                + f" | {statistics.median(r['wall'] for r in last):.2f} |"
            )  # fmt: skip
    fl = out["floors"]
    lines.append("")
    lines.append(
        f"Floors over the {len(out['tasks'])} instances: greedy decoding of LM × moves "
        f"{np.mean(fl['greedy']):.2f}, one random legal-move rollout {np.mean(fl['random']):.3f} "
        "(exact probability)."
    )
    # the BENCH ratio on the exact PRM
    ratio, a_s, b_s, s_s = 0.0, float("nan"), float("nan"), float("nan")
    A = args.bench_astar
    if ("bon", "exact", budgets[-1]) in summary and (A, "exact", budgets[-1]) in summary:
        goal = summary[("bon", "exact", budgets[-1])][0]
        b_s = goal
        a_s = summary[(A, "exact", budgets[-1])][0]
        s_s = summary.get(("smc_ratio", "exact", budgets[-1]), (float("nan"),))[0]
        bb = next(b for b in budgets if summary[("bon", "exact", b)][0] >= goal)
        ab = [b for b in budgets if summary[(A, "exact", b)][0] >= goal]
        if ab:
            ratio = summary[("bon", "exact", bb)][2] / max(summary[(A, "exact", ab[0])][2], 1)
    plot(summary, scorers, budgets, args.plot)
    bench = (
        f"BENCH search astar_tokens_ratio_vs_bon={ratio:.2f} astar_success={a_s:.3f} "
        f"bon_success={b_s:.3f} smc_success={s_s:.3f}"
    )
    return "\n".join(lines), bench


def plot(summary: dict, scorers: list[str], budgets: list[int], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(scorers), figsize=(5 * len(scorers), 4), squeeze=False)
    for ax, kind in zip(axes[0], scorers):
        for eng in ENGINES:
            pts = [summary.get((eng, kind, b)) for b in budgets]
            if not all(pts):
                continue
            x = [p[2] for p in pts]
            y = [p[0] for p in pts]
            h = [0 if p[1] != p[1] else p[1] for p in pts]
            e = [[min(a, m) for a, m in zip(h, y)], [min(a, 1 - m) for a, m in zip(h, y)]]
            ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=eng)
        ax.set_xscale("log")
        ax.set_xlabel("LM tokens spent (mean)")
        ax.set_ylabel("success rate")
        ax.set_title(f"Countdown, PRM = {kind}")
        ax.set_ylim(-0.05, 1.05)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def merge(parts: list[dict]) -> dict:
    """Several ``--rows`` files (runs on different instances) as one result."""
    out = {"rows": [], "floors": {"greedy": [], "random": []}, "tasks": [], "argv": [], "wall": 0.0}
    out["budgets"] = parts[0]["budgets"]
    for part in parts:
        if part["budgets"] != out["budgets"]:
            raise ValueError("the --rows files were run with different --budgets")
        offset = len(out["tasks"])
        out["rows"] += [{**r, "task": r["task"] + offset} for r in part["rows"]]
        for k in ("greedy", "random"):
            out["floors"][k] += part["floors"][k]
        out["tasks"] += part["tasks"]
        out["argv"].append(part["argv"])
        out["wall"] += part["wall"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--instances", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budgets", default="48,96,192,384")
    ap.add_argument("--numbers", type=int, default=3, help="numbers per instance")
    ap.add_argument("--task-seed", type=int, default=0)
    ap.add_argument("--scorers", default="exact,noisy,judge")
    ap.add_argument("--judge-instances", type=int, default=3, help="instances run with the judge")
    ap.add_argument("--k", type=int, default=4, help="A*: steps sampled per expansion")
    ap.add_argument("--beam-widths", type=lambda s: [int(x) for x in s.split(",")], default="1,2,4")
    ap.add_argument("--deal-widths", type=lambda s: [int(x) for x in s.split(",")], default="1")
    ap.add_argument("--lookahead", type=int, default=4)
    ap.add_argument("--lazy-k", type=int, default=1, help="lazy A*: steps sampled per pop")
    ap.add_argument("--bench-astar", default="astar_lazy", help="the A* of the BENCH line")
    ap.add_argument("--engines", default=",".join(ENGINES), help="engines to run")
    ap.add_argument("--smc-unit", action="store_true", help="SMC resamples only at '\\n'")
    ap.add_argument("--plot", default=str(ROOT / "docs" / "search_bench.png"))
    ap.add_argument("--rows", default="", help="write the raw rows (JSON) after each instance")
    ap.add_argument("--from-rows", default="", help="summarise a --rows file instead of running")
    ap.add_argument("--no-write", action="store_true", help="do not touch docs/benchmarks.md")
    ap.add_argument("--model", choices=list(MODELS), default="smollm2", help="the embedded LM")
    args = ap.parse_args()
    args.engines = args.engines.split(",")
    if isinstance(args.beam_widths, str):
        args.beam_widths = [int(x) for x in args.beam_widths.split(",")]
    if isinstance(args.deal_widths, str):
        args.deal_widths = [int(x) for x in args.deal_widths.split(",")]
    t0 = time.perf_counter()
    if args.from_rows:
        out = merge([json.loads(Path(f).read_text()) for f in args.from_rows.split(",")])
    else:
        out = run(args)
    table, bench = summarise(out, args)
    total = time.perf_counter() - t0
    runs = out.get("argv", [sys.argv[1:]])
    total = out.get("wall", total)
    cmd = "`; `".join(
        "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/search.py " + " ".join(a) for a in runs
    )
    text = (
        f"## Search engines on Countdown{TITLE[args.model]} (issue 12)\n\n"
        f"`{cmd.strip()}` — {MODELS[args.model]}, 1 torch thread, {len(out['tasks'])} "
        f"instances of {args.numbers} numbers, {args.seeds} seeds, A* k={args.k} "
        f"(lazy A* k={args.lazy_k}; the BENCH line's A* is `{args.bench_astar}`), "
        f"engines {', '.join(args.engines)}, "
        f"beam widths {args.beam_widths}, DeAL widths {args.deal_widths} (lookahead "
        f"{args.lookahead}), LM judge on the first {args.judge_instances} instances; "
        f"total wall time {total:.0f} s on a shared 2-core machine.\n\n"
        + table
        + "\n\nSuccess: the top answer passes the verifier (mean over instances, ± the 95 % t "
        "interval over seeds). Tokens: LM tokens spent (mean). Tokens to first correct: "
        "median over runs that produced a correct solution anywhere (for best-of-N, the first "
        "correct draw, even when the ranking chose another). PRM calls: distinct step lists "
        "scored. Wall: median seconds per run (best-of-N: its share of the pool). Beam search "
        "uses no PRM (its rows repeat); the judge rows cover only the judged instances.\n"
        + f"\n![success vs tokens]({Path(args.plot).name})\n\n"
        + f"`{bench}`\n"
    )
    print(text)
    if not args.no_write:
        write_section("search" if args.model == "smollm2" else f"search_{args.model}", text)
    print(bench)


if __name__ == "__main__":
    main()
