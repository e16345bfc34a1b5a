"""Benchmark the llguidance-backed constraints (issue 5, point 8), one thread.

* full-vocabulary masks: ``LLGState.allowed()`` (the boolean mask with EOS, the path
  hard constraints take in products and samplers) and ``LLGState.logw_next`` (the dense
  float64 log-weight row), over states reached while walking valid MaskBench documents
  tokenized by Gemma 3 (262k) and SmolLM2 (49k);
* the single-token check (``LLGState.logw_tokens``) on the next token of the document;
* raw llguidance and raw xgrammar masks on the same schemas and states (xgrammar gets the
  same token table, its bitmask only);
* compile time per schema (byte-level ``potentia.json`` + lift to Gemma's vocabulary);
* schemas accepted by potentia, raw llguidance and raw xgrammar on the whole sample;
* conformance on the JSON-Schema-Test-Suite (2020-12) and the MaskBench sample.

Run: ``.venv/bin/python benchmarks/constraints.py [--schemas 40]``; writes its table to
docs/benchmarks.md between the ``constraints`` markers and ends with a BENCH line.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import llguidance  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from _report import write_section  # noqa: E402

from potentia.constraints.json_schema import JSONSchema  # noqa: E402
from potentia.constraints.llg import LLGState, llg_tokenizer  # noqa: E402
from potentia.lm.embedded import _fast_tokenizer, cache_dir  # noqa: E402
from potentia.lm.tokenizer import byte_table  # noqa: E402
from potentia.potentials import Vocabulary  # noqa: E402

torch.set_num_threads(1)
DATA = Path("/work/shared/data")
ROOT = Path(__file__).resolve().parents[1]


def load_vocab(folder: str) -> tuple[Vocabulary, object]:
    """The LM's vocabulary (non-special tokens with bytes), built from its tokenizer only."""
    tok = _fast_tokenizer(cache_dir() / folder)
    table = byte_table(tok, exclude_special=True)
    ids = [i for i, t in enumerate(table.tokens) if t]
    return Vocabulary([table.tokens[i] for i in ids], ids=ids, name=folder), tok


def maskbench():
    for f in sorted((DATA / "maskbench-sample").glob("*.json")):
        d = json.loads(f.read_text())
        yield f.stem, d["schema"], d["tests"]


def pct(xs, q):
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def walk_states(c, vocab, tok, text):
    """Positions of ``text``'s tokens (None if a token is outside the vocabulary)."""
    pos = {int(i): k for k, i in enumerate(vocab.ids)}
    ids = tok(text, add_special_tokens=False)["input_ids"]
    out = [pos.get(i) for i in ids]
    return None if None in out else out


def bench_vocab(vocab, tok, cases, xgr_ok):
    import xgrammar as xgr

    info = xgr.TokenizerInfo(
        list(vocab.tokens) + [b"</s>"], vocab_size=len(vocab) + 1, stop_token_ids=[len(vocab)]
    )
    compiler = xgr.GrammarCompiler(info, max_threads=1)
    t = {k: [] for k in ("ours", "bits", "raw", "xgr", "check", "check2", "rawcheck", "compile")}
    n_states = 0
    for _name, schema, doc in cases:
        t0 = time.perf_counter()
        c = JSONSchema(schema).lift(vocab)
        t["compile"].append((time.perf_counter() - t0) * 1e3)
        ctx = walk_states(c, vocab, tok, doc)
        if ctx is None:
            continue
        xm = None
        if xgr_ok:
            try:
                xm = xgr.GrammarMatcher(compiler.compile_json_schema(schema, any_whitespace=True))
                xbits = xgr.allocate_token_bitmask(1, len(vocab) + 1)
            except Exception:
                xm = None
        state = c.init_state(1)
        words = np.zeros((1, (len(vocab) + 32) // 32), dtype=np.int32)
        for tkn in ctx:
            # every measurement on its own copy of the matcher: no engine cache is shared
            m = state.matchers[0]
            ma, mb, mc, md = m.deep_copy(), m.deep_copy(), m.deep_copy(), m.deep_copy()
            me = m.deep_copy()
            i0 = time.perf_counter()
            me.validate_tokens([int(tkn)])
            t["rawcheck"].append((time.perf_counter() - i0) * 1e6)
            a = time.perf_counter()
            ma.unsafe_compute_mask_ptr(words.ctypes.data, words.nbytes)
            b = time.perf_counter()
            LLGState(c, [mb], [list(state.contexts[0])]).logw_next()
            d = time.perf_counter()
            LLGState(c, [mc], [list(state.contexts[0])]).allowed()
            e = time.perf_counter()
            fresh = LLGState(c, [md], [list(state.contexts[0])])
            rows, toks = np.zeros(1, dtype=np.int64), np.array([tkn])
            f = time.perf_counter()
            fresh.logw_tokens(rows, toks)
            g = time.perf_counter()
            fresh.logw_tokens(rows, toks)
            h = time.perf_counter()
            t["raw"].append((b - a) * 1e6)
            t["ours"].append((d - b) * 1e6)
            t["bits"].append((e - d) * 1e6)
            t["check"].append((g - f) * 1e6)
            t["check2"].append((h - g) * 1e6)
            if xm is not None:
                h = time.perf_counter()
                xm.fill_next_token_bitmask(xbits)
                t["xgr"].append((time.perf_counter() - h) * 1e6)
                if not xm.accept_token(tkn):
                    xm = None
            state = state.advance(np.array([tkn]))
            n_states += 1
        assert state.complete()[0] == 0.0, "a valid document was rejected"
    return t, n_states


def acceptance():
    import xgrammar as xgr

    info = xgr.TokenizerInfo([bytes([i]) for i in range(256)] + [b"</s>"], stop_token_ids=[256])
    compiler = xgr.GrammarCompiler(info, max_threads=1)
    btok = llg_tokenizer(Vocabulary.bytes256())
    ours = llg = xg = total = 0
    xgr_ok = {}
    for name, schema, _ in maskbench():
        total += 1
        try:
            JSONSchema(schema)
            ours += 1
        except ValueError:
            pass
        g = llguidance.LLMatcher.grammar_from_json_schema(schema)
        llg += not llguidance.LLMatcher.validate_grammar(g, btok)
        try:
            compiler.compile_json_schema(schema, any_whitespace=True)
            xg += 1
            xgr_ok[name] = True
        except Exception:
            xgr_ok[name] = False
    return ours, llg, xg, total, xgr_ok


def conformance():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "conformance", ROOT / "tests" / "potentials" / "test_conformance.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    run, jsts_cases, maskbench_cases = mod.run, mod.jsts_cases, mod.maskbench_cases
    return (
        run(jsts_cases(), formats=False),
        run(jsts_cases(), formats=True),
        run(maskbench_cases(), formats=True),
    )


def write_doc(table: str, cmd: str) -> None:
    write_section("constraints", f"{table}\nCommand: `{cmd}`")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--schemas", type=int, default=40, help="MaskBench schemas walked")
    args = ap.parse_args()
    ours, llg, xg, total, xgr_ok = acceptance()
    step = max(1, total // args.schemas)
    cases = []
    for k, (name, schema, tests) in enumerate(maskbench()):
        valid = [t["data"] for t in tests if t["valid"]]
        if k % step == 0 and valid:
            cases.append((name, schema, json.dumps(valid[0], ensure_ascii=False)))
    rows = []
    res = {}
    for label, folder in (
        ("Gemma 3 (262k)", "gemma-3-270m-f32-v1"),
        ("SmolLM2 (49k)", "smollm2-135m-instruct-f32-v1"),
    ):
        vocab, tok = load_vocab(folder)
        llg_tokenizer(vocab)  # built once per vocabulary (not part of compile time)
        xcases = [cs for cs in cases if xgr_ok.get(cs[0])]
        t, n = bench_vocab(vocab, tok, xcases, True)
        res[label] = t
        rows.append(
            f"| {label} | {len(vocab)} | {len(xcases)} / {n} | "
            f"{pct(t['ours'], 50):.0f} / {pct(t['ours'], 99):.0f} | "
            f"{pct(t['bits'], 50):.0f} / {pct(t['bits'], 99):.0f} | "
            f"{pct(t['raw'], 50):.0f} / {pct(t['raw'], 99):.0f} | "
            f"{pct(t['xgr'], 50):.0f} / {pct(t['xgr'], 99):.0f} | "
            f"{pct(t['check'], 50):.1f} / {pct(t['check2'], 50):.1f} / "
            f"{pct(t['rawcheck'], 50):.1f} | "
            f"{pct(t['compile'], 50):.1f} |"
        )
    j_ann, j_fmt, mb = conformance()
    g = res["Gemma 3 (262k)"]
    table = "\n".join(
        [
            "### Constraints (llguidance layer), 1 thread",
            "",
            "Mask times in µs, p50 / p99 over the states reached while walking one valid "
            "document per schema (same states for every engine). *dense row* = "
            "`LLGState.logw_next` (bitmask + dense float64 log-weight row with EOS); *mask* = "
            "`LLGState.allowed()`, the boolean allowed-token mask with EOS that products and "
            "samplers use for hard constraints; *raw llg* = llguidance's bitmask fill; *xgrammar* "
            "= `GrammarMatcher.fill_next_token_bitmask` on the same token table. Token check = "
            "`LLGState.logw_tokens` for the document's next token, first call at a state "
            "and a repeated call, and llguidance's own `validate_tokens` at a fresh state. Compile = byte-level `potentia.json` + lift to the "
            "vocabulary (tokenizer built once beforehand).",
            "",
            "| vocabulary | V | schemas / states | dense row | mask | raw llg | xgrammar "
            "| token check µs p50 (first / repeat / raw llg first) | compile ms p50 |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Schemas accepted on the MaskBench sample: potentia {ours}/{total}, raw "
            f"llguidance {llg}/{total}, raw xgrammar {xg}/{total}.",
            "",
            f"Conformance: JSON-Schema-Test-Suite 2020-12, {j_ann['accepted']}/"
            f"{j_ann['schemas']} schemas accepted, instances agreed {j_ann['agree']}/"
            f"{j_ann['instances']} with `format` as annotation (the 2020-12 default), "
            f"{j_fmt['agree']}/{j_fmt['instances']} with `format` asserted (our default); "
            f"MaskBench sample {mb['accepted']}/{mb['schemas']} schemas, "
            f"{mb['agree']}/{mb['instances']} instances agreed.",
        ]
    )
    cmd = "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/constraints.py --schemas " + str(
        args.schemas
    )
    write_doc(table, cmd)
    print(table)
    print(
        f"BENCH constraints mask_p50_us={pct(g['bits'], 50):.1f} "
        f"mask_p99_us={pct(g['bits'], 99):.1f} token_check_us={pct(g['check'], 50):.2f} "
        f"compile_p50_ms={pct(g['compile'], 50):.1f} maskbench_schemas_ok={mb['accepted']}/"
        f"{mb['schemas']} maskbench_instances_agree={mb['agree']}/{mb['instances']} "
        f"jsts_instances_agree={j_fmt['agree']}/{j_fmt['instances']} "
        f"mask_p50_vs_xgrammar={pct(g['bits'], 50) / pct(g['xgr'], 50):.2f} "
        f"dense_row_p50_us={pct(g['ours'], 50):.1f}"
    )


if __name__ == "__main__":
    main()
