"""JSONSchemaBench on potentia, side by side with the masking engines (issue 17).

Two parts, one script.

``mask`` (LM-free): for every valid test instance of the MaskBench sample
(``../shared/data/maskbench-sample/``), walk its prefixes in three serialisations
(``json.dumps`` compact, ``indent=2``, ``ensure_ascii=False``) byte by byte and count
*over-constraining* errors per engine: a prefix of a valid instance that the engine
refuses (one per instance × serialisation: the first refused byte; every engine here is
prefix-monotone). Engines: potentia ``json_schema(schema, mode="any")`` (the mode that
admits every JSON text of the schema), raw llguidance (``grammar_from_json_schema``,
its defaults), xgrammar (``compile_json_schema``, its defaults, ``accept_string``) and
outlines-core (``Index`` of ``build_regex_from_schema``, its defaults, over a 256-byte
vocabulary). *Under-constraining* is estimated from the invalid test instances: an
invalid instance that is a closed JSON value and that the engine's prefix check admits
is a prefix from which no valid instance exists (a closed value only extends by
whitespace, which changes nothing). potentia catches every one at the finished-value
check; the masking engines emit them.

``gen`` (Gemma 3 270M): a seeded sample of ``--per-split`` schemas from each split of
``../shared/data/jsonschemabench-dev/`` (Github_trivial, Github_easy, Glaiveai2K), the
same prompt and token budget per schema, engines interleaved per schema in one process:
potentia SMC (AWRS, 8 particles, defaults), potentia ``method="lcd"``, and greedy masked
decoding with llguidance, xgrammar and outlines-core masks on potentia's LM logits.
Metrics: declared coverage (compiles), empirical coverage (the output validates with
jsonschema Draft 2020-12 + format checking, parsed as ``potentia.json`` does: no
duplicate keys, no NaN), compliance (valid among generated), compile ms, time to first
token, ms per output token, LM calls, and the LM log-likelihood of the output
(unconstrained Gemma, given the prompt). A per-schema wall-clock budget per engine;
a timeout is a failure.

Run: ``.venv/bin/python benchmarks/jsonschemabench.py mask [--write]`` and
``.venv/bin/python benchmarks/jsonschemabench.py gen --per-split N --max-tokens T
--budget S [--save FILE] [--write]``; ``report --mask FILE --gen FILE`` rewrites the docs
section and the plot from saved runs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import jsonschema  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path("/work/shared/data")
MASKBENCH = DATA / "maskbench-sample"
JSB = DATA / "jsonschemabench-dev"
SPLITS = ("Github_trivial", "Github_easy", "Glaiveai2K")
SERIALISATIONS = {
    "compact": lambda v: json.dumps(v, separators=(",", ":")),
    "indent2": lambda v: json.dumps(v, indent=2),
    "unicode": lambda v: json.dumps(v, ensure_ascii=False),
}
ENGINES_MASK = ("potentia", "llguidance", "xgrammar", "outlines")
ENGINES_GEN = ("potentia", "potentia_lcd", "llguidance", "xgrammar", "outlines")


# ----------------------------------------------------------------- validity (the judge)
def _no_dupes(pairs: list[tuple[str, Any]]) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate key")
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def is_valid(schema: Any, text: str) -> bool:
    """Draft 2020-12 with format checking, the document parsed as potentia.json parses it."""
    try:
        value = json.loads(text, object_pairs_hook=_no_dupes, parse_constant=_no_constant)
    except ValueError:
        return False
    v = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    try:
        return v.is_valid(value)
    except Exception:  # an unresolvable $ref and the like
        return False


# ----------------------------------------------------------------- byte-level walkers
class _Walker:
    """One engine's byte-level prefix check: ``feed(byte) -> bool``, ``accepting()``."""

    def feed(self, b: int) -> bool:  # noqa: D102
        raise NotImplementedError

    def accepting(self) -> bool:  # noqa: D102
        raise NotImplementedError


class PotentiaWalker(_Walker):
    """potentia's constraint read through its Potential contract (state advance/prefix)."""

    def __init__(self, c: Any) -> None:
        self.st = c.init_state(1)

    def feed(self, b: int) -> bool:  # noqa: D102
        self.st = self.st.advance(np.array([b]))
        return bool(self.st.prefix()[0] == 0.0)

    def accepting(self) -> bool:  # noqa: D102
        return bool(self.st.complete()[0] == 0.0)


class LLGWalker(_Walker):
    """Raw llguidance over the 256-byte tokenizer."""

    def __init__(self, grammar: str) -> None:
        import llguidance

        from potentia.constraints.llg import llg_tokenizer
        from potentia.potentials.base import Vocabulary

        self.m = llguidance.LLMatcher(llg_tokenizer(Vocabulary.bytes256()), grammar, log_level=0)

    def feed(self, b: int) -> bool:  # noqa: D102
        return self.m.try_consume_tokens([b]) == 1 and not self.m.is_error()

    def accepting(self) -> bool:  # noqa: D102
        return bool(self.m.is_accepting())


class XGRWalker(_Walker):
    """xgrammar's GrammarMatcher, one byte per ``accept_string``."""

    def __init__(self, compiled: Any) -> None:
        import xgrammar as xgr

        self.m = xgr.GrammarMatcher(compiled, terminate_without_stop_token=True)

    def feed(self, b: int) -> bool:  # noqa: D102
        return bool(self.m.accept_string(bytes([b])))

    def accepting(self) -> bool:  # noqa: D102
        return bool(self.m.is_terminated())


class OutlinesWalker(_Walker):
    """outlines-core's Guide over an Index built for 256 one-byte tokens (ids 1..256)."""

    def __init__(self, index: Any) -> None:
        import outlines_core as oc

        self.g = oc.Guide(index)

    def feed(self, b: int) -> bool:  # noqa: D102
        try:
            self.g.advance(b + 1)
        except Exception:
            return False
        return True

    def accepting(self) -> bool:  # noqa: D102
        return bool(self.g.is_finished())


_BYTE_XGR: Any = None
_BYTE_OC: Any = None


def compile_byte_engine(engine: str, schema: Any) -> Any:
    """A factory of fresh walkers for ``engine`` on ``schema`` (raises if it refuses it)."""
    global _BYTE_XGR, _BYTE_OC
    if engine == "potentia":
        from potentia.constraints.json_schema import JSONSchema

        c = JSONSchema(schema, mode="any")
        return lambda: PotentiaWalker(c)
    if engine == "llguidance":
        import llguidance

        g = llguidance.LLMatcher.grammar_from_json_schema(json.dumps(schema))
        w = LLGWalker(g)  # the constructor validates the grammar
        if w.m.is_error():
            raise ValueError(w.m.get_error())
        return lambda: LLGWalker(g)
    if engine == "xgrammar":
        import xgrammar as xgr

        if _BYTE_XGR is None:
            _BYTE_XGR = xgr.GrammarCompiler(xgr.TokenizerInfo([bytes([i]) for i in range(256)]))
        cg = _BYTE_XGR.compile_json_schema(json.dumps(schema))
        return lambda: XGRWalker(cg)
    if engine == "outlines":
        import outlines_core as oc
        from outlines_core.json_schema import build_regex_from_schema

        if _BYTE_OC is None:
            _BYTE_OC = oc.Vocabulary(0, {bytes([i]): [i + 1] for i in range(256)})
        idx = oc.Index(build_regex_from_schema(json.dumps(schema)), _BYTE_OC)
        return lambda: OutlinesWalker(idx)
    raise ValueError(f"unknown engine {engine!r}")


def first_refused(make: Any, data: bytes) -> tuple[int | None, bool]:
    """Index of the first refused byte of ``data`` (None: all admitted) and acceptance."""
    w = make()
    for i, b in enumerate(data):
        if not w.feed(b):
            return i, False
    return None, w.accepting()


def _closed(text: str) -> bool:
    """A JSON text whose value is closed (only whitespace may follow it)."""
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _empty_record() -> dict:
    return {
        "compiled": 0,
        "refused": [],
        "timeouts": 0,
        "walks": 0,
        "over": [],
        "final_refused": [],
        "invalid_walks": 0,
        "under": 0,
        "invalid_accepted": 0,
    }


def _one_file(e: str, name: str, schema: Any, valid: list, invalid: list) -> dict:
    """One engine on one MaskBench file: a partial record (merged by :func:`mask_errors`)."""
    r = _empty_record()
    try:
        make = compile_byte_engine(e, schema)
    except Timeout:
        raise
    except Exception as err:  # noqa: BLE001 - every refusal is a declared-coverage miss
        r["refused"].append((name, str(err)[:120]))
        return r
    r["compiled"] += 1
    for v in valid:
        for sname, ser in SERIALISATIONS.items():
            text = ser(v)
            data = text.encode("utf-8")
            r["walks"] += 1
            try:
                at, acc = first_refused(make, data)
            except Timeout:
                raise
            except Exception as err:  # noqa: BLE001
                r["over"].append((name, sname, -1, f"error: {str(err)[:80]}"))
                continue
            if at is not None:
                r["over"].append((name, sname, at, data[: at + 1].decode("utf-8", "replace")[-60:]))
            elif not acc:
                r["final_refused"].append((name, sname, text[:80]))
    for v in invalid:
        text = json.dumps(v)
        if not _closed(text):
            continue
        r["invalid_walks"] += 1
        try:
            at, acc = first_refused(make, text.encode("utf-8"))
        except Timeout:
            raise
        except Exception:  # noqa: BLE001
            continue
        if at is None:
            r["under"] += 1
            r["invalid_accepted"] += int(acc)
    return r


def _in_child(budget: float, *args: Any) -> dict | None:
    """:func:`_one_file` in a forked process killed after ``budget`` s (native code that
    never returns to Python, e.g. a regex-to-DFA blow-up, ignores SIGALRM)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)

    def target() -> None:
        send.send(_one_file(*args))

    proc = ctx.Process(target=target)
    proc.start()
    out = recv.recv() if recv.poll(budget) else None
    proc.join(0.1)
    if proc.is_alive():
        proc.kill()
        proc.join()
    return out


def mask_errors(
    files: list[Path], engines: tuple[str, ...] = ENGINES_MASK, budget: float = 30.0
) -> dict:
    """Over- and under-constraining counts per engine on MaskBench files.

    ``budget``: seconds per engine and file (compile and all walks); past it the schema
    counts as refused (a timeout).
    """
    out: dict[str, Any] = {e: _empty_record() for e in engines}
    n_valid = n_invalid = 0
    signal.signal(signal.SIGALRM, _alarm)
    for e in engines:  # per-vocabulary set-up outside the per-schema budget
        compile_byte_engine(e, {"type": "string"})
    for k, f in enumerate(files):
        doc = json.loads(f.read_text())
        schema = doc["schema"]
        tests = doc.get("tests", [])
        valid = [t["data"] for t in tests if t.get("valid")]
        invalid = [t["data"] for t in tests if not t.get("valid")]
        n_valid += len(valid)
        n_invalid += len(invalid)
        for e in engines:
            r = out[e]
            if e == "outlines":
                part = _in_child(budget, e, f.stem, schema, valid, invalid)
            else:
                signal.setitimer(signal.ITIMER_REAL, budget)
                try:
                    part = _one_file(e, f.stem, schema, valid, invalid)
                except Timeout:
                    part = None
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            if part is None:
                r["timeouts"] += 1
                r["refused"].append((f.stem, f"timeout {budget:g} s"))
                continue
            for key, val in part.items():
                r[key] = r[key] + val
        if k % 50 == 0:
            print(f"[{k}/{len(files)}] {f.stem}", flush=True)
    out["_n"] = {"files": len(files), "valid": n_valid, "invalid": n_invalid, "budget": budget}
    out["_n"]["args"] = f"--budget {budget:g}"
    return out


# ----------------------------------------------------------------- generation
PROMPT = (
    "You need to generate a JSON object that matches the schema below. Output only the "
    "JSON.\nSchema:\n{schema}\nJSON:\n"
)


class Timeout(Exception):
    """The per-schema wall-clock budget ran out."""


def _alarm(_s: int, _f: Any) -> None:
    raise Timeout


def sample_schemas(per_split: int, seed: int) -> list[tuple[str, str, Any]]:
    """``per_split`` schemas from each split (all of it if smaller), seeded, as
    (split, name, schema), each split in the seeded order (its first k: a seeded sample)."""
    rng = np.random.default_rng(seed)
    out = []
    for split in SPLITS:
        files = sorted((JSB / split).glob("*.json"))
        pick = rng.choice(len(files), size=min(per_split, len(files)), replace=False)
        for i in pick.tolist():  # in the seeded order: a run cut short is a seeded sample
            out.append((split, files[i].stem, json.loads(files[i].read_text())))
    return out


def _by_score(lp: np.ndarray, limit: int) -> Any:
    """Positions of ``lp`` from the highest score down (the first ``limit``), lazily: the
    argmax first, then the next 63, then the rest (a full sort of 262k scores is ~20 ms
    and the argmax is almost always allowed)."""
    top = int(np.argmax(lp))
    yield top
    seen = 1
    for k in (64, limit):
        k = min(k, len(lp))
        part = np.argpartition(-lp, k - 1)[:k]
        part = part[np.argsort(-lp[part], kind="stable")]
        yield from part[seen:].tolist()
        seen = k
        if k == len(lp):
            return


class MaskedDecoder:
    """Greedy masked decoding on potentia's LM: argmax of the LM's log-probs among the
    tokens the engine's matcher allows (candidates tried in LM order), EOS when allowed.
    """

    def __init__(self, lm: Any) -> None:
        self.lm = lm
        self.vocab = lm.vocab
        self.V = len(self.vocab)
        self._xgr = None
        self._oc = None

    # -- per-engine matchers: (try(token) -> bool, accept(token), eos_ok() -> bool)
    def _oc_index(self, s: str, budget: float) -> Any:
        """outlines-core's Index for schema text ``s``, built in a forked child killed after
        ``budget`` s (a regex-to-automaton blow-up stays in native code, where SIGALRM
        never lands); the Index comes back pickled."""
        import multiprocessing as mp
        import pickle

        import outlines_core as oc
        from outlines_core.json_schema import build_regex_from_schema

        ctx = mp.get_context("fork")
        recv, send = ctx.Pipe(duplex=False)
        voc = self._oc

        def target() -> None:
            try:
                out = ("ok", oc.Index(build_regex_from_schema(s), voc))
            except Exception as err:  # noqa: BLE001 - the engine refuses the schema
                out = ("err", str(err)[:160])
            send.send_bytes(pickle.dumps(out))

        proc = ctx.Process(target=target, daemon=True)
        proc.start()
        try:
            if not recv.poll(budget):
                raise Timeout
            kind, val = pickle.loads(recv.recv_bytes())
        finally:
            if proc.is_alive():
                proc.kill()
            proc.join()
        if kind == "err":
            raise ValueError(val)
        return val

    def compile(self, engine: str, schema: Any, budget: float = 60.0) -> Any:  # noqa: D102
        s = json.dumps(schema)
        if engine == "llguidance":
            import llguidance

            from potentia.constraints.llg import llg_tokenizer

            g = llguidance.LLMatcher.grammar_from_json_schema(s)
            m = llguidance.LLMatcher(llg_tokenizer(self.vocab), g, log_level=0)
            if m.is_error():
                raise ValueError(m.get_error())
            return ("llg", m)
        if engine == "xgrammar":
            import xgrammar as xgr

            if self._xgr is None:
                info = xgr.TokenizerInfo(
                    list(self.vocab.tokens) + [b"<eos>"], stop_token_ids=[self.V]
                )
                self._xgr = xgr.GrammarCompiler(info)
            return ("xgr", xgr.GrammarMatcher(self._xgr.compile_json_schema(s)))
        if engine == "outlines":
            import outlines_core as oc

            if self._oc is None:
                table: dict[bytes, list[int]] = {}
                for i, t in enumerate(self.vocab.tokens):
                    if t:
                        table.setdefault(bytes(t), []).append(i)
                self._oc = oc.Vocabulary(self.V, table)
            return ("oc", oc.Guide(self._oc_index(s, budget)))
        raise ValueError(engine)

    def _ok(self, kind: str, m: Any, t: int) -> bool:
        if kind == "llg":
            return m.validate_tokens([t]) == 1
        if kind == "xgr":
            if m.accept_token(t):
                m.rollback(1)
                return True
            return False
        return m.accepts_tokens([t])

    def _eos_ok(self, kind: str, m: Any) -> bool:
        if kind == "llg":
            return bool(m.is_accepting())
        if kind == "xgr":
            if m.accept_token(self.V):
                m.rollback(1)
                return True
            return False
        return bool(m.is_finished()) or self.V in m.get_tokens()

    def _take(self, kind: str, m: Any, t: int) -> None:
        if kind == "llg":
            m.consume_token(t)
        elif kind == "xgr":
            m.accept_token(t)
        else:
            m.advance(t)

    def decode(self, matcher: Any, prompt: str, max_tokens: int) -> dict:  # noqa: D102
        kind, m = matcher
        st = self.lm.potential(prompt).init_state(1)
        toks: list[int] = []
        ll = 0.0
        calls = 0
        t0 = time.perf_counter()
        ttft = None
        status = "max_tokens"
        for _ in range(max_tokens):
            lp = st.logw_next()[0]
            calls += 1
            chosen = None
            for t in _by_score(lp, 4096):
                if t == self.V:
                    if self._eos_ok(kind, m):
                        chosen = t
                        break
                elif self._ok(kind, m, t):
                    chosen = t
                    break
            if chosen is None:
                status = "dead"
                break
            if ttft is None:
                ttft = time.perf_counter() - t0
            ll += float(lp[chosen])
            if chosen == self.V:
                status = "eos"
                break
            self._take(kind, m, chosen)
            toks.append(chosen)
            st = st.advance(np.array([chosen]))
        wall = time.perf_counter() - t0
        text = self.vocab.decode_bytes(toks).decode("utf-8", "replace")
        return {
            "text": text,
            "n_tokens": len(toks),
            "ttft": ttft,
            "wall": wall,
            "lm_calls": calls,
            "loglik": ll,
            "status": status,
        }


def lm_loglik(lm: Any, prompt: str, toks: list[int], eos: bool) -> float:
    """Unconstrained LM log-likelihood of ``toks`` (and EOS) after ``prompt``: one forward."""
    pot = lm.potential(prompt)
    return float(pot.complete(list(toks)) if eos else pot.prefix(list(toks)))


def run_potentia(
    lm: Any, schema: Any, prompt: str, method: str, max_tokens: int, seed: int
) -> dict:
    """One pt.sample run; the output is one string drawn by weight (the estimator's)."""
    import potentia as pt

    t0 = time.perf_counter()
    c = pt.json(schema)
    compile_s = time.perf_counter() - t0
    kw = {"particles": 8} if method == "smc" else {"particles": 1}
    t1 = time.perf_counter()
    res = pt.sample(
        lm, prompt, c, method=method, max_tokens=max_tokens, seed=seed, progress=False, **kw
    )
    wall = time.perf_counter() - t1
    w = res.weights if not callable(res.weights) else res.weights()
    w = np.asarray(w, dtype=float)
    alive = np.isfinite(np.asarray(res.log_weights)) & (w > 0)
    if not alive.any():
        return {
            "compile_s": compile_s,
            "text": None,
            "status": "all_dead",
            "wall": wall,
            "lm_calls": res.target_evals,
            "n_tokens": 0,
            "dead": int(len(res.texts)),
            "particles": int(len(res.texts)),
            "causes": sorted({str(st)[:200] for st in res.status})[:4],  # why, in its words
        }
    i = int(np.random.default_rng(seed).choice(len(w), p=w / w.sum()))
    text = res.texts[i]
    toks = res.contexts[i]
    eos = bool(res.status[i] in ("eos", "done", "finished"))
    return {
        "compile_s": compile_s,
        "text": text,
        "toks": list(map(int, toks)),
        "status": res.status[i],
        "wall": wall,
        "lm_calls": int(res.target_evals),
        "n_tokens": len(toks),
        "dead": int((~alive).sum()),
        "particles": int(len(res.texts)),
        "eos": eos,
        "particle_valid": float(np.mean([is_valid(schema, t) for t in res.texts])),
    }


def _interleaved(picks: list[tuple[str, str, Any]]) -> list[tuple[str, str, Any]]:
    """The sample in round-robin split order, so a partial run stays balanced."""
    by = {sp: [p for p in picks if p[0] == sp] for sp in SPLITS}
    out = []
    for k in range(max((len(v) for v in by.values()), default=0)):
        out.extend(v[k] for v in by.values() if k < len(v))
    return out


def _read_rows(path: Path) -> tuple[dict | None, list[dict]]:
    """A ``gen`` run file: a header line (the run's settings), then one row per line."""
    if not path.exists():
        return None, []
    head, rows = None, []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except ValueError:  # a line cut short by a killed run
            continue
        if "_header" in d:
            head = d["_header"]
        else:
            rows.append(d)
    return head, rows


def load_gen(path: Path) -> dict:
    """A saved ``gen`` run: the JSON-lines file (header + rows) or an older single JSON."""
    text = path.read_text()
    if text.lstrip().startswith('{"_header"'):
        head, rows = _read_rows(path)
        return {**(head or {}), "rows": rows}
    return json.loads(text)


def generate(
    per_split: int,
    max_tokens: int,
    budget: float,
    seed: int,
    engines: tuple[str, ...],
    out: Path | None = None,
    limit_s: float = 0.0,
    backend: str = "transformers",
    dtype: str = "fp32",
) -> dict:
    """The generation part: one record per (schema, engine).

    Every engine decodes with the same LM, ``pt.LM.default(backend=backend, dtype=dtype)``
    (the embedded Gemma 3 270M, 1 thread).

    With ``out``, rows are appended to that JSON-lines file as they finish and a rerun
    with the same settings skips the (schema, engine) pairs already there (resumable);
    ``limit_s`` > 0 stops starting new schemas once that much wall time has passed.
    """
    import torch

    import potentia as pt

    settings = {
        "per_split": per_split,
        "max_tokens": max_tokens,
        "budget": budget,
        "seed": seed,
        "backend": backend,
        "dtype": dtype,
    }
    older = {"backend": "transformers", "dtype": "fp32"}  # files written before these keys
    done: set[tuple[str, str, str]] = set()
    rows: list[dict] = []
    fh = None
    if out is not None:
        head, rows = _read_rows(out)
        if head is not None:
            old = {k: head.get(k, older.get(k)) for k in settings}
            if old != settings:
                raise SystemExit(f"{out} was written with {old}; this run asks {settings}")
        done = {(r["split"], r["schema"], r["engine"]) for r in rows}
        fh = out.open("a")
        if head is None:
            head = {**settings, "commit": _commit(), "limit_s": limit_s}
            fh.write(json.dumps({"_header": head}) + "\n")
            fh.flush()
    torch.set_num_threads(1)
    lm = pt.LM.default(backend=backend, dtype=dtype, n_threads=1)
    dec = MaskedDecoder(lm)
    signal.signal(signal.SIGALRM, _alarm)
    t_start = time.perf_counter()
    for split, name, schema in _interleaved(sample_schemas(per_split, seed)):
        if limit_s and time.perf_counter() - t_start > limit_s:
            print(f"stopping: {limit_s:g} s wall limit reached", flush=True)
            break
        prompt = PROMPT.format(schema=json.dumps(schema))
        for e in engines:
            if (split, name, e) in done:
                continue
            rec: dict[str, Any] = {"split": split, "schema": name, "engine": e}
            t_rec = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, budget)
            try:
                if e.startswith("potentia"):
                    t0 = time.perf_counter()
                    pt.json(schema)  # declared coverage, apart from the sampling budget
                    rec.update(declared=True, compile_s=time.perf_counter() - t0)
                    r = run_potentia(
                        lm, schema, prompt, "lcd" if e.endswith("lcd") else "smc", max_tokens, seed
                    )
                    rec["declared"] = True
                    toks = r.pop("toks", None)
                    rec.update(r)
                    signal.setitimer(signal.ITIMER_REAL, 0)  # scoring is not the engine's time
                    if r.get("text") is not None:
                        rec["loglik"] = lm_loglik(lm, prompt, toks, r.get("eos", False))
                else:
                    t0 = time.perf_counter()
                    try:
                        m = dec.compile(e, schema, budget)
                    except Timeout:
                        raise
                    except Exception as err:  # noqa: BLE001
                        rec.update(declared=False, error=str(err)[:160])
                        m = None
                    if m is not None:
                        rec["compile_s"] = time.perf_counter() - t0
                        rec["declared"] = True
                        rec.update(dec.decode(m, prompt, max_tokens))
            except Timeout:
                rec.update(declared=rec.get("declared", False), text=None, status="timeout")
            except ValueError as err:  # potentia refused the schema
                rec.update(declared=False, error=str(err)[:160])
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            rec["total_s"] = time.perf_counter() - t_rec
            if rec.get("text") is not None:
                rec["valid"] = is_valid(schema, rec["text"])
            print(json.dumps({k: v for k, v in rec.items() if k != "text"}), flush=True)
            rows.append(rec)
            if fh is not None:
                fh.write(json.dumps(rec) + "\n")
                fh.flush()
    if fh is not None:
        fh.close()
    return {**settings, "rows": rows, "commit": _commit()}


def _commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()


# ----------------------------------------------------------------- reporting
def complete_rows(gen: dict) -> list[dict]:
    """The rows of schemas every engine of the run finished (a run cut mid-schema leaves
    some engines without a row for its last schema; that schema is left out)."""
    engines = {r["engine"] for r in gen["rows"]}
    have: dict[tuple[str, str], set[str]] = {}
    for r in gen["rows"]:
        have.setdefault((r["split"], r["schema"]), set()).add(r["engine"])
    return [r for r in gen["rows"] if have[(r["split"], r["schema"])] == engines]


def summarise(gen: dict) -> dict:
    """Per (split, engine): declared, empirical, compliance, timing means."""
    out: dict[tuple[str, str], dict] = {}
    all_rows = complete_rows(gen)
    for split in (*SPLITS, "all"):
        for e in ENGINES_GEN:
            rows = [r for r in all_rows if r["engine"] == e and split in ("all", r["split"])]
            if not rows:
                continue
            n = len(rows)
            gen_rows = [r for r in rows if r.get("text") is not None]
            ok = [r for r in gen_rows if r.get("valid")]
            comp = [1e3 * r["compile_s"] for r in rows if "compile_s" in r]
            tpot = [1e3 * r["wall"] / r["n_tokens"] for r in gen_rows if r.get("n_tokens")]
            ttft = [1e3 * r["ttft"] for r in gen_rows if r.get("ttft") is not None]
            ll = [r["loglik"] / max(1, r["n_tokens"]) for r in ok if "loglik" in r]
            out[(split, e)] = {
                "n": n,
                "declared": sum(bool(r.get("declared")) for r in rows) / n,
                "empirical": len(ok) / n,
                "compliance": len(ok) / len(gen_rows) if gen_rows else float("nan"),
                "timeouts": sum(r.get("status") == "timeout" for r in rows),
                "out_of_tokens": sum(r.get("status") == "max_tokens" for r in rows),
                "no_output": sum(r.get("status") in ("all_dead", "dead") for r in rows),
                "invalid": len(gen_rows) - len(ok),
                "compile_p50_ms": float(np.median(comp)) if comp else float("nan"),
                "compile_p99_ms": float(np.percentile(comp, 99)) if comp else float("nan"),
                "ttft_ms": float(np.median(ttft)) if ttft else float("nan"),
                "tpot_ms": float(np.median(tpot)) if tpot else float("nan"),
                "lm_calls": float(np.mean([r.get("lm_calls", 0) for r in gen_rows]))
                if gen_rows
                else float("nan"),
                "ll_per_token": float(np.mean(ll)) if ll else float("nan"),
                "dead_frac": float(
                    np.mean([r["dead"] / r["particles"] for r in rows if r.get("particles")])
                )
                if any(r.get("particles") for r in rows)
                else float("nan"),
                "particle_valid": float(
                    np.mean([r["particle_valid"] for r in rows if "particle_valid" in r])
                )
                if any("particle_valid" in r for r in rows)
                else float("nan"),
                "schemas": len({r["schema"] for r in rows}),
                "wall_s": float(sum(r.get("total_s", r.get("wall", 0.0)) for r in rows)),
            }
    return out


def _kept_mask_section() -> str:
    """The mask-error subsection now in docs/benchmarks.md (kept when only ``gen`` is
    reported), and potentia's over-constraining count read from its table."""
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    a, b = text.find("<!-- BEGIN jsb -->"), text.find("<!-- END jsb -->")
    sec = text[a:b] if a >= 0 and b > a else ""
    k = sec.find("### Mask errors")
    if k < 0:
        return ""
    ends = [e for e in (sec.find("\n### ", k + 1), sec.find("\n```text\nBENCH", k)) if e > 0]
    return sec[k : min(ends, default=len(sec))].rstrip() + "\n"


def plot(summ: dict, path: Path) -> None:
    """Coverage × compliance, one marker per engine and split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    marks = dict(zip(SPLITS, "os^"))
    colors = dict(zip(ENGINES_GEN, ["C0", "C1", "C2", "C3", "C4"]))
    for (split, e), s in summ.items():
        if split == "all":
            continue
        ax.scatter(
            s["empirical"],
            s["compliance"],
            marker=marks[split],
            color=colors[e],
            s=60,
            alpha=0.8,
            label=f"{e} · {split}",
        )
    ax.set_xlabel("empirical coverage")
    ax.set_ylabel("compliance")
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=6, ncol=2, loc="lower left")
    ax.set_title("JSONSchemaBench, Gemma 3 270M")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(
    mask: dict | None, gen: dict | None, write: bool, compile_times: dict | None = None
) -> str:
    """The docs section text (and the BENCH line, printed).

    ``compile_times``: a ``benchmarks/json_compile.py --vocab gemma --save`` file's content
    (the MaskBench sample compiled and lifted to Gemma 3's vocabulary, the measurement the
    compile targets name); without it the BENCH line's compile figures are the generation
    loop's own ``pt.json`` times.
    """
    parts = ["## JSONSchemaBench (issue 17)\n"]
    bench: dict[str, Any] = {}
    if gen is not None:
        summ = summarise(gen)
        cmd = (
            f".venv/bin/python benchmarks/jsonschemabench.py gen --per-split "
            f"{gen['per_split']} --max-tokens {gen['max_tokens']} --budget {gen['budget']:g}"
            f" --seed {gen['seed']}"
            + (f" --limit-s {gen['limit_s']:g}" if gen.get("limit_s") else "")
            + (
                f" --backend {gen['backend']} --dtype {gen['dtype']}"
                if gen.get("backend", "transformers") != "transformers"
                else ""
            )
            + " --out gen.jsonl"
        )
        sizes = {sp: len(list((JSB / sp).glob("*.json"))) for sp in SPLITS}
        ns = {sp: summ[(sp, "potentia")]["schemas"] for sp in SPLITS if (sp, "potentia") in summ}
        n_all = sum(ns.values())
        wall = sum(v["wall_s"] for (sp, _e), v in summ.items() if sp == "all")
        per = wall / max(1, n_all)
        parts.append(
            f"Run: **{', '.join(f'{sp} {ns.get(sp, 0)}' for sp in SPLITS)} schemas** "
            f"({n_all} in all; the first of each split in the seeded order of sample "
            f"{gen['seed']}, splits interleaved), {gen['max_tokens']}-token budget, "
            f"{gen['budget']:g} s per schema and engine (a timeout is a failure), Gemma 3 "
            f"270M on {gen.get('backend', 'transformers')} {gen.get('dtype', 'fp32')} for "
            "every engine, 1 thread, one process on the shared 2-core machine (commit "
            f"{gen['commit']}). The dev splits hold {', '.join(str(sizes[sp]) for sp in SPLITS)}"
            " schemas, so ≥ 100 per split cannot be drawn from them"
            + (
                ": this run took every schema of every split. "
                if n_all >= sum(sizes.values())
                else "; the run stopped at its wall limit. "
            )
            + f"The five engines took {wall / 60:.0f} min, {per:.0f} s per schema"
            + (
                f": the whole dev set ({sum(sizes.values())}) would take "
                f"≈ {sum(sizes.values()) * per / 3600:.1f} h on this machine. "
                if n_all < sum(sizes.values())
                else ". "
            )
            + f"Command: `{cmd}` (rows appended as they finish; rerun to resume). "
            f"With n ≈ {min(ns.values()) if ns else 0} per split a fraction's standard error "
            "is up to ≈ 0.5/√n.\n"
        )
        for split in (*SPLITS, "all"):
            parts.append(f"\n### {split}\n")
            parts.append(
                "| engine | n | declared | empirical | compliance | timeouts | out of tokens | "
                "no output | invalid | compile p50 ms | TTFT ms | ms/token | LM calls | "
                "LL/token (valid) |"
            )
            parts.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
            for e in ENGINES_GEN:
                s = summ.get((split, e))
                if s is None:
                    continue
                parts.append(
                    f"| {e} | {s['n']} | {s['declared']:.2f} | {s['empirical']:.2f} | "
                    f"{s['compliance']:.2f} | {s['timeouts']} | {s['out_of_tokens']} | "
                    f"{s['no_output']} | {s['invalid']} | {s['compile_p50_ms']:.1f} | "
                    f"{s['ttft_ms']:.0f} | {s['tpot_ms']:.0f} | {s['lm_calls']:.0f} | "
                    f"{s['ll_per_token']:.2f} |"
                )
        parts.append("\n![coverage × compliance](jsb_coverage.png)\n")
        parts.append(
            "Failures: *timeouts* (past the per-schema budget), *out of tokens* (a masked "
            "greedy decode still unfinished at the token budget; its text is kept and "
            "counts as generated but invalid, so it is also under *invalid*), *no output* "
            "(potentia: no particle finished), *invalid* (a text was produced and does not "
            "validate); schemas an engine refused count against declared coverage.\n"
        )
        parts.append(
            "LM calls: forwards of the LM (potentia: `Result.target_evals`, batched over "
            "8 particles; masking: one per token). TTFT for potentia is not separated from "
            "the run (blank); for the masking loops it excludes the prompt's prefill (the "
            "prompt's cache is shared by the engines of a schema). LL/token: the "
            "unconstrained LM log-likelihood per output token of the valid outputs, given "
            "the prompt.\n"
        )
        pa = summ[("all", "potentia")]
        parts.append(
            f"potentia SMC particles: {100 * pa['dead_frac']:.0f} % dead at the end of a run "
            "on average (weight zero at the end: the finished-value check refused the text, or "
            f"it ran out of tokens), and {100 * pa['particle_valid']:.0f} % of all particles' "
            "texts validate; the returned string is drawn among the live ones by weight.\n"
        )
        a = summ[("all", "potentia")]
        bench.update(
            declared=a["declared"],
            empirical=a["empirical"],
            compliance=a["compliance"],
            compile_p50_ms=a["compile_p50_ms"],
            compile_p99_ms=a["compile_p99_ms"],
            llg_empirical=summ[("all", "llguidance")]["empirical"],
            xgr_empirical=summ[("all", "xgrammar")]["empirical"],
        )
        if write:
            plot(summ, ROOT / "docs" / "jsb_coverage.png")
    if compile_times is not None:
        ms = np.array(list(compile_times["times_ms"].values()))
        bench.update(
            compile_p50_ms=float(np.median(ms)), compile_p99_ms=float(np.percentile(ms, 99))
        )
        parts.append(
            f"\n### Compile time (MaskBench sample)\n\n`potentia.json(schema)` lifted to "
            f"Gemma 3's 262k-token vocabulary, each of the {len(ms)} MaskBench schemas once "
            f"({len(compile_times['refused'])} refused), {compile_times['clock']} clock, "
            f"1 thread (commit {compile_times['commit']}): p50 {np.median(ms):.2f} ms, "
            f"p90 {np.percentile(ms, 90):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms, max "
            f"{ms.max():.0f} ms. Command: `.venv/bin/python benchmarks/json_compile.py "
            f"--vocab gemma --clock {compile_times['clock']} --save FILE`, then `report "
            "--compile FILE`. These are the BENCH line's compile figures; the tables' "
            "compile column is `pt.json` inside the generation loop (byte level, wall clock, "
            "on the dev schemas).\n"
        )
    if mask is None and write:
        kept = _kept_mask_section()
        if kept:
            parts.append("\n" + kept)
            for line in kept.splitlines():
                if line.startswith("| potentia |"):
                    bench["over_constraining"] = int(line.split("|")[5])
    if mask is not None:
        n = mask["_n"]
        parts.append(
            f"\n### Mask errors on the MaskBench sample (LM-free)\n\n{n['files']} schemas, "
            f"{n['valid']} valid and {n['invalid']} invalid test instances; each valid one "
            "walked byte by byte in 3 serialisations (compact, `indent=2`, "
            "`ensure_ascii=False`). Over-constraining: walks with a refused prefix. "
            "Refused at the end: every prefix admitted, the finished text refused. "
            "Under-constraining estimate: invalid instances that are closed JSON values "
            "admitted as prefixes (no valid completion exists from them). Command: "
            f"`.venv/bin/python benchmarks/jsonschemabench.py mask {n.get('args', '')} --write`"
            f" ({n['budget']:g} s per engine and schema; a timeout counts as not compiled).\n"
        )
        parts.append(
            "| engine | schemas compiled | timeouts | walks | over-constraining | "
            "refused at the end | invalid admitted as prefix | invalid accepted "
            "as finished |"
        )
        parts.append("|---|---|---|---|---|---|---|---|")
        for e in ENGINES_MASK:
            r = mask.get(e)
            if r is None:
                continue
            parts.append(
                f"| {e} | {r['compiled']} / {n['files']} | {r['timeouts']} | {r['walks']} | "
                f"{len(r['over'])} | "
                f"{len(r['final_refused'])} | {r['under']} / {r['invalid_walks']} | "
                f"{r['invalid_accepted']} / {r['invalid_walks']} |"
            )
        bench["over_constraining"] = len(mask["potentia"]["over"])
    keys = (
        "declared",
        "empirical",
        "compliance",
        "compile_p50_ms",
        "compile_p99_ms",
        "llg_empirical",
        "xgr_empirical",
        "over_constraining",
    )
    line = "BENCH jsb " + " ".join(
        f"{k}={bench[k]:.3g}" if isinstance(bench.get(k), float) else f"{k}={bench.get(k, 'NA')}"
        for k in keys
    )
    parts.append(f"\n```text\n{line}\n```\n")
    text = "\n".join(parts)
    if write:
        write_section("jsb", text)
    print(text)
    return text


def main() -> None:  # noqa: D103
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("mask")
    m.add_argument("--limit", type=int, default=0, help="first N MaskBench files (0: all)")
    m.add_argument("--budget", type=float, default=20.0, help="s per engine and file")
    m.add_argument("--sample", type=int, default=0, help="a seeded sample of N files (0: all)")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--save", type=Path)
    m.add_argument("--write", action="store_true")
    g = sub.add_parser("gen")
    g.add_argument("--per-split", type=int, default=100)
    g.add_argument("--max-tokens", type=int, default=128)
    g.add_argument("--budget", type=float, default=60.0)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--engines", default=",".join(ENGINES_GEN))
    g.add_argument("--save", type=Path)
    g.add_argument(
        "--out", type=Path, help="JSON-lines file rows are appended to (resumable: reruns skip)"
    )
    g.add_argument("--limit-s", type=float, default=0.0, help="stop starting schemas after S s")
    g.add_argument("--backend", default="transformers", help="LM backend of every engine")
    g.add_argument("--dtype", default="fp32", help="its weight type (fp32, bf16, ...)")
    g.add_argument("--write", action="store_true")
    r = sub.add_parser("report")
    r.add_argument("--mask", type=Path)
    r.add_argument("--gen", type=Path)
    r.add_argument("--compile", type=Path, help="a json_compile.py --vocab gemma --save file")
    r.add_argument("--write", action="store_true")
    args = ap.parse_args()
    if args.cmd == "mask":
        files = sorted(MASKBENCH.glob("*.json"))
        files = files[: args.limit] if args.limit else files
        if args.sample:
            pick = np.random.default_rng(args.seed).choice(len(files), args.sample, replace=False)
            files = [files[i] for i in sorted(pick.tolist())]
        res = mask_errors(files, budget=args.budget)
        res["_n"]["args"] = f"--budget {args.budget:g}" + (
            f" --sample {args.sample} --seed {args.seed}" if args.sample else ""
        )
        if args.save:
            args.save.write_text(json.dumps(res))
        for e in ENGINES_MASK:
            for o in res[e]["over"][:20]:
                print(e, "over", o)
        report(res, None, args.write)
    elif args.cmd == "gen":
        res = generate(
            args.per_split,
            args.max_tokens,
            args.budget,
            args.seed,
            tuple(args.engines.split(",")),
            out=args.out,
            limit_s=args.limit_s,
            backend=args.backend,
            dtype=args.dtype,
        )
        if args.save:
            args.save.write_text(json.dumps(res))
        report(None, res, args.write)
    else:
        mask = json.loads(args.mask.read_text()) if args.mask else None
        gen = load_gen(args.gen) if args.gen else None
        comp = json.loads(args.compile.read_text()) if args.compile else None
        report(mask, gen, args.write, comp)


if __name__ == "__main__":
    main()
