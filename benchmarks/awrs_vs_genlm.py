"""SMC with AWRS: potentia against genlm-control 0.4.1 on Gemma 3 270M (one process).

Both systems sample the same target, LM(x | prompt) · 1{x valid}, with 8 particles, ESS
threshold 0.5 and equal ``max_tokens``, on the same transformers model object, one torch
thread. genlm-control gets its best setup: ``AsyncTransformer`` over the shared model with
``batch_size`` = number of particles, the prompt's KV cached with ``cache_kv``, and its
output trie cleared between runs (so no run reuses another's forwards).

Tasks: (a) a regex after "The capital of France is"; (b) a JSON object ``{"name": string,
"age": integer}`` after a two-shot line-delimited prompt, with "\\n" as end of sequence;
(c) a regex the LM finds unlikely (``[A-Z][a-z]+ (is|was) [0-9]{2,4}\\.``).

Measured per task and system, summed over the runs: wall time, particle-tokens (token
proposals, one per live particle per step, EOS included) per second, single-token
constraint checks per particle-token (plus full masks for potentia's exact fallback),
valid outputs among finished particles, dead particles (killed by the token sampler),
truncated particles (``max_tokens`` reached) and the fraction of wall time spent outside
the model's forward pass (timed by hooks on the shared ``torch.nn.Module``).

Systems: potentia and genlm-control on the transformers fp32 model (genlm-control's
default CPU setup; the same-backend ratio), both again on a bf16 copy of it
(``LM.default(backend="transformers", dtype="bf16")``; genlm-control is handed that model
object), and potentia on its default backend (``LM.default()``: llama.cpp, fp16 weights;
genlm-control has no llama.cpp backend). Systems are interleaved: each of ``--rounds``
rounds runs every system once per task, ``--runs`` SMC runs each; the figures are sums
over rounds. ``speedup_*`` is potentia's fastest row against genlm-control's default
(fp32); ``speedup_bf16_*`` compares both on bf16; ``same_backend_*`` both on fp32.

Usage::

    .venv/bin/python benchmarks/awrs_vs_genlm.py [--runs 3] [--rounds 2] [--tasks a,b,c]
        [--no-write]
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import jsonschema  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from _report import write_section  # noqa: E402

import potentia as pt  # noqa: E402
from potentia.lm import LM  # noqa: E402
from potentia.samplers.awrs import AWRS  # noqa: E402
from potentia.samplers.base import TokenSampler  # noqa: E402
from potentia.smc import smc  # noqa: E402

N_PARTICLES = 8
ESS = 0.5
FRANCE = "The capital of France is"
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
JSON_PROMPT = (
    "Here are people as JSON objects, one per line:\n"
    '{"name": "Alice", "age": 31}\n'
    '{"name": "Bob", "age": 45}\n'
)


@dataclass
class Task:
    name: str
    prompt: str
    kind: str  # "regex" or "json"
    spec: object
    max_tokens: int
    newline_eos: bool = False

    def valid(self, text: str) -> bool:
        if self.kind == "regex":
            return re.fullmatch(self.spec, text) is not None
        try:
            jsonschema.validate(json.loads(text), self.spec)
        except (ValueError, jsonschema.ValidationError):
            return False
        return True


TASKS = {
    "a": Task("a", FRANCE, "regex", r" (Paris|Lyon|Marseille|[A-Z][a-z]+)(\.|,)", 12),
    "b": Task("b", JSON_PROMPT, "json", SCHEMA, 32, newline_eos=True),
    "c": Task("c", FRANCE, "regex", r" [A-Z][a-z]+ (is|was) [0-9]{2,4}\.", 32),
}


@dataclass
class Stats:
    wall: float = 0.0
    forward: float = 0.0
    tokens: int = 0
    checks: int = 0
    masks: int = 0
    finished: int = 0
    valid: int = 0
    dead: int = 0
    truncated: int = 0
    samples: list = field(default_factory=list)

    def add(self, other: Stats) -> None:
        for k in ("wall", "forward", "tokens", "checks", "masks", "finished", "valid"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        self.dead += other.dead
        self.truncated += other.truncated
        self.samples += other.samples

    def row(self, task: str, system: str) -> dict:
        return {
            "task": task,
            "system": system,
            "wall_s": self.wall,
            "tokens": self.tokens,
            "tok_per_s": self.tokens / self.wall if self.wall else 0.0,
            "checks_per_tok": self.checks / max(self.tokens, 1),
            "masks_per_tok": self.masks / max(self.tokens, 1),
            "valid": f"{self.valid}/{self.finished}",
            "dead": self.dead,
            "truncated": self.truncated,
            "outside_fwd": 1.0 - self.forward / self.wall if self.wall else 0.0,
        }


class ForwardTimer:
    """Accumulates wall time spent inside ``module.forward`` (outermost calls only)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.total, self._t0, self._depth = 0.0, 0.0, 0
        module.register_forward_pre_hook(self._pre)
        module.register_forward_hook(self._post)

    def _pre(self, *_):
        if self._depth == 0:
            self._t0 = time.perf_counter()
        self._depth += 1

    def _post(self, *_):
        self._depth -= 1
        if self._depth == 0:
            self.total += time.perf_counter() - self._t0


class ExtendTimer:
    """Accumulates wall time inside a potentia backend's ``_extend`` (the llama.cpp decode:
    batch fill, ``llama_decode``, logits copy), like :class:`ForwardTimer` for torch."""

    def __init__(self, backend) -> None:
        self.total = 0.0
        inner = backend._extend

        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                self.total += time.perf_counter() - t0

        backend._extend = timed


class Counting(TokenSampler):
    """Delegates to a sampler and counts proposals, checks and masks."""

    def __init__(self, inner: TokenSampler) -> None:
        self.inner, self.target = inner, inner.target
        self.tokens = self.masks = 0

    def init_state(self, n):
        return self.inner.init_state(n)

    def sample(self, state, rng, draw=None):
        out = self.inner.sample(state, rng, draw)
        self.tokens += len(state)
        self.masks += out.info.get("masks", 0)
        return out


# ----------------------------------------------------------------------------- potentia
def run_potentia(task: Task, lm: LM, timer: ForwardTimer, runs: int) -> Stats:
    lm_task = LM(lm.backend, lm.tokenizer, eos="\n") if task.newline_eos else lm
    c = pt.regex(task.spec) if task.kind == "regex" else pt.json(task.spec, mode="any")
    sampler = Counting(AWRS(lm_task.potential(task.prompt), c))
    smc(sampler, N_PARTICLES, 2, rng=12345)  # warm-up: prompt prefill, lifting tables
    st = Stats()
    sampler.tokens = sampler.masks = 0
    for seed in range(runs):
        f0, t0 = timer.total, time.perf_counter()
        res = smc(sampler, N_PARTICLES, task.max_tokens, rng=seed, ess_threshold=ESS)
        st.wall += time.perf_counter() - t0
        st.forward += timer.total - f0
        st.checks += res.constraint_checks
        for text, status in zip(res.texts, res.status):
            if status == "finished":
                st.finished += 1
                st.valid += task.valid(text)
                st.samples.append(text)
            elif status == "truncated" or "max_tokens" in status:
                st.truncated += 1
            elif status.startswith("dead"):
                st.dead += 1
    st.tokens, st.masks = sampler.tokens, sampler.masks
    return st


# ----------------------------------------------------------------------------- genlm
def run_genlm(task: Task, lm: LM, timer: ForwardTimer, runs: int) -> Stats:
    from genlm.backend.llm import AsyncTransformer
    from genlm.control import AWRS as GenlmAWRS
    from genlm.control import BoolFSA, JsonSchema, PromptedLLM
    from genlm.control.constant import EOS

    atf = AsyncTransformer(lm.model, lm.tokenizer, batch_size=N_PARTICLES)
    ids = lm.prompt_ids(task.prompt)
    if task.newline_eos:
        eos = [b"\n"]
    else:
        eos = [atf.byte_vocab[i].byte_string for i in lm.eos_ids]
    llm = PromptedLLM(atf, prompt_ids=ids, eos_byte_strings=eos)
    if task.kind == "regex":
        cond = BoolFSA.from_regex(task.spec).coerce(llm, f=b"".join)
    else:
        cond = JsonSchema(task.spec).coerce(llm, f=b"".join)
    sampler = GenlmAWRS(llm, cond)
    counts = {"tokens": 0, "checks": 0}
    accept, sample = sampler._accept, sampler.sample

    async def counted_accept(*a, **k):
        counts["checks"] += 1
        return await accept(*a, **k)

    async def counted_sample(*a, **k):
        counts["tokens"] += 1
        return await sample(*a, **k)

    sampler._accept, sampler.sample = counted_accept, counted_sample

    def fresh():
        atf.clear_cache()
        atf.cache_kv(ids)

    fresh()
    asyncio.run(sampler.smc(n_particles=N_PARTICLES, ess_threshold=ESS, max_tokens=2))
    st = Stats()
    counts.update(tokens=0, checks=0)
    for _ in range(runs):
        fresh()
        f0, t0 = timer.total, time.perf_counter()
        seqs = asyncio.run(
            sampler.smc(n_particles=N_PARTICLES, ess_threshold=ESS, max_tokens=task.max_tokens)
        )
        st.wall += time.perf_counter() - t0
        st.forward += timer.total - f0
        for ctx, lw in zip(seqs.contexts, seqs.log_weights):
            done = len(ctx) > 0 and ctx[-1] is EOS
            text = b"".join(t.byte_string for t in ctx if t is not EOS)
            text = text.decode("utf-8", errors="replace")
            if lw == -np.inf:
                st.dead += 1
            elif done:
                st.finished += 1
                st.valid += task.valid(text)
                st.samples.append(text)
            else:
                st.truncated += 1
    st.tokens, st.checks = counts["tokens"], counts["checks"]
    return st


# ----------------------------------------------------------------------------- report
def table(rows: list[dict], ratios: dict) -> str:
    head = (
        "| task | system | wall s | particle-tokens | tokens/s | checks/token | masks/token "
        "| valid/finished | dead | truncated | outside LM forward |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {r['task']} | {r['system']} | {r['wall_s']:.2f} | {r['tokens']} | "
        f"{r['tok_per_s']:.1f} | {r['checks_per_tok']:.2f} | {r['masks_per_tok']:.3f} | "
        f"{r['valid']} | {r['dead']} | {r['truncated']} | {r['outside_fwd']:.1%} |\n"
        for r in rows
    )
    rat = "".join(
        f"| {t} | {v['speedup']:.2f}× ({v['best']}) | {v['same']:.2f}× | {v['bf16']:.2f}× "
        f"| {v['checks']:.2f} vs {v['genlm_checks']:.2f} |\n"
        for t, v in ratios.items()
    )
    return (
        head + body + "\n| task | tokens/s, fastest potentia ÷ genlm fp32 | same backend (fp32) "
        "| both bf16 | checks/token, potentia vs genlm (fp32) |\n"
        + "|---|---:|---:|---:|---:|\n"
        + rat
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="SMC runs per task, system and round")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds of all systems")
    ap.add_argument("--tasks", default="a,b,c")
    ap.add_argument("--no-write", action="store_true", help="do not touch docs/benchmarks.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=FutureWarning)
    lms = {"fp32": LM.default(backend="transformers")}
    notes = []
    try:
        lms["bf16"] = LM.default(backend="transformers", dtype="bf16")
    except ValueError as err:  # no bf16 arithmetic on this CPU
        notes.append(f"bf16 rows not run: {err}")
    default = LM.default()  # potentia's default backend (llama.cpp fp16)
    if default.backend is not lms["fp32"].backend:
        lms["default"] = default
    timers = {
        k: ForwardTimer(v.model) if k in ("fp32", "bf16") else ExtendTimer(v.backend)
        for k, v in lms.items()
    }
    systems = [
        (f"{name}{'' if dt == 'fp32' else ' ' + dt}", fn, dt)
        for dt in lms
        for name, fn in (("potentia", run_potentia), ("genlm-control", run_genlm))
        if dt in ("fp32", "bf16") or name == "potentia"
    ]
    tasks = args.tasks.split(",")
    acc: dict[tuple[str, str], Stats] = {}
    failed: dict[tuple[str, str], str] = {}
    for _ in range(args.rounds):
        for name in tasks:
            for system, fn, dt in systems:
                if (name, system) in failed:
                    continue
                try:
                    st = fn(TASKS[name], lms[dt], timers[dt], args.runs)
                except Exception as err:  # e.g. genlm-control refusing a bf16 model
                    failed[(name, system)] = f"{type(err).__name__}: {err}"[:200]
                    print(system, name, "failed:", failed[(name, system)], flush=True)
                    continue
                acc.setdefault((name, system), Stats()).add(st)
                print(name, system, st.row(name, system), "e.g.", st.samples[:2], flush=True)
    per = {k: v.row(*k) for k, v in acc.items()}
    rows = [per[(t, s)] for t in tasks for s, _, _ in systems if (t, s) in per]
    notes += [f"{s} on task {t} failed: {why}" for (t, s), why in failed.items()]

    def tps(t, s):
        return per[(t, s)]["tok_per_s"] if (t, s) in per else float("nan")

    def best(t):  # potentia's fastest measured backend on task t
        cands = [s for s, _, _ in systems if s.startswith("potentia") and (t, s) in per]
        return max(cands, key=lambda s: tps(t, s)) if cands else "potentia"

    ratios = {
        t: {
            "speedup": tps(t, best(t)) / tps(t, "genlm-control"),
            "best": best(t),
            "same": tps(t, "potentia") / tps(t, "genlm-control"),
            "bf16": tps(t, "potentia bf16") / tps(t, "genlm-control bf16"),
            "checks": per.get((t, "potentia"), {}).get("checks_per_tok", float("nan")),
            "genlm_checks": per.get((t, "genlm-control"), {}).get("checks_per_tok", float("nan")),
        }
        for t in tasks
    }
    cmd = "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/awrs_vs_genlm.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    text = (
        f"## AWRS: potentia vs genlm-control 0.4.1 (Gemma 3 270M)\n\n"
        f"`{cmd.strip()}` — {args.rounds} interleaved rounds × {args.runs} SMC runs per task "
        f"and system (figures summed), {N_PARTICLES} particles, "
        f"ESS threshold {ESS}, max_tokens a={TASKS['a'].max_tokens} b={TASKS['b'].max_tokens} "
        f"c={TASKS['c'].max_tokens}, 1 torch thread, {platform.processor() or platform.machine()}"
        f", {os.cpu_count()} CPUs (shared with other jobs: noisy). fp32 rows share one "
        'transformers model object (`LM.default(backend="transformers")`), bf16 rows another '
        '(`dtype="bf16"`); `potentia default` is `LM.default()` '
        f"({default.backend!r}, 1 thread; its forward time is the backend's decode).\n\n"
        + table(rows, ratios)
        + "".join(f"\n- {n}" for n in notes)
    )
    print(text)
    if not args.no_write:
        write_section("awrs_vs_genlm", text)

    def val(t, s, k, default=float("nan")):
        return per[(t, s)][k] if (t, s) in per else default

    def r(t, k):
        return ratios.get(t, {}).get(k, float("nan"))

    fast = {t: ratios[t]["best"] for t in tasks}
    outside = max(
        (val(t, fast[t], "outside_fwd") for t in tasks if t in ("a", "b")), default=float("nan")
    )
    print(
        "BENCH awrs"
        f" speedup_a={r('a', 'speedup'):.2f} speedup_b={r('b', 'speedup'):.2f}"
        f" speedup_bf16_a={r('a', 'bf16'):.2f} speedup_bf16_b={r('b', 'bf16'):.2f}"
        f" same_backend_a={r('a', 'same'):.2f} same_backend_b={r('b', 'same'):.2f}"
        f" checks_per_token_a={val('a', 'potentia', 'checks_per_tok'):.2f}"
        f" checks_per_token_b={val('b', 'potentia', 'checks_per_tok'):.2f}"
        f" dead_c={val('c', 'potentia', 'dead', -1)}"
        f" outside_lm_frac={outside:.3f}"
    )


if __name__ == "__main__":
    main()
