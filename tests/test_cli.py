"""The ``potentia`` command line, through typer's runner (toy models) and one subprocess."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

import potentia as pt
from potentia import cli
from potentia.models import ToyLM, random_ngram

runner = CliRunner()


def _toy() -> ToyLM:
    vocab = pt.Vocabulary([b'"', b"a", b"b", b"ab"])
    return ToyLM(random_ngram(np.random.default_rng(7), vocab, order=2))


@pytest.fixture
def toy_models(monkeypatch):
    """``--model toy`` (a 4-token n-gram); ``--model boom`` fails if it is ever loaded."""
    loaded = []

    def toy():
        loaded.append("toy")
        return _toy()

    def boom():
        raise AssertionError("the model was loaded although the input was bad")

    monkeypatch.setitem(cli.MODELS, "toy", toy)
    monkeypatch.setitem(cli.MODELS, "boom", boom)
    return loaded


def _lines(stdout: str) -> tuple[list[dict], dict]:
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert rows[-1]["summary"] is True and all("summary" not in r for r in rows[:-1])
    return rows[:-1], rows[-1]


def test_sample_writes_what_pt_sample_returns(toy_models):
    args = ["sample", "--model", "toy", "--regex", "(a|b)+", "-n", "12", "-t", "5", "--seed", "3"]
    res = runner.invoke(cli.app, [*args, "--no-progress"])
    assert res.exit_code == 0, res.output
    particles, summary = _lines(res.stdout)
    ref = pt.sample(_toy(), "", pt.regex("(a|b)+"), particles=12, max_tokens=5, seed=3)
    assert [p["text"] for p in particles] == ref.texts
    assert [p["status"] for p in particles] == ref.status
    assert [p["weight"] for p in particles] == [float(w) for w in ref.weights]
    lw = [None if not np.isfinite(x) else float(x) for x in ref.log_weights]
    assert [p["log_weight"] for p in particles] == lw
    assert summary["log_z"] == ref.log_z and summary["posterior"] == ref.posterior
    assert summary["particles"] == 12 and summary["seed"] == 3 and summary["model"] == "toy"
    assert abs(sum(p["weight"] for p in particles) - 1) < 1e-9
    for p in particles:
        if p["status"] == "finished":
            assert re.fullmatch("(a|b)+", p["text"])
        else:
            assert p["weight"] == 0
    # another seed gives another run (the seed reaches the engine)
    other = runner.invoke(cli.app, [*args[:-1], "4", "--no-progress"])
    assert _lines(other.stdout)[1]["log_z"] != summary["log_z"]


def test_sample_with_json_and_grammar_files(toy_models, tmp_path):
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"enum": ["a", "ab", "ba"]}))
    res = runner.invoke(cli.app, ["sample", "-m", "toy", "--json", str(schema), "-n", "8"])
    assert res.exit_code == 0, res.output
    particles, summary = _lines(res.stdout)
    assert summary["log_z"] is not None
    texts = {p["text"] for p in particles if p["status"] == "finished"}
    assert texts and texts <= {'"a"', '"ab"', '"ba"'}

    grammar = tmp_path / "g.lark"
    grammar.write_text('start: "a"+ "b"\n')
    out = tmp_path / "out.jsonl"
    res = runner.invoke(
        cli.app, ["sample", "-m", "toy", "--grammar", str(grammar), "-n", "8", "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert res.stdout == ""
    particles, _ = _lines(out.read_text())
    finished = [p["text"] for p in particles if p["status"] == "finished"]
    assert finished and all(re.fullmatch("a+b", t) for t in finished)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--regex", "a", "--grammar", "g.lark"], "--regex and --grammar"),
        (["--regex", "(a"], "--regex"),
        (["--json", "missing.json"], "`--json` is 'missing.json', which is not a file"),
        (["--grammar", "missing.lark"], "`--grammar`"),
        (["--particles", "0"], "`--particles` is 0"),
        (["--max-tokens", "0"], "`--max-tokens` is 0"),
    ],
)
def test_bad_input_fails_before_the_model_loads(toy_models, args, message):
    res = runner.invoke(cli.app, ["sample", "-m", "boom", *args])
    assert res.exit_code == 2, res.output
    assert message in res.stderr
    assert res.stdout == ""


def test_unknown_model_names_the_choices(toy_models):
    res = runner.invoke(cli.app, ["sample", "-m", "gpt5", "--regex", "a"])
    assert res.exit_code == 2
    assert "`--model` is 'gpt5'" in res.stderr and "gemma" in res.stderr and "smollm2" in res.stderr


def test_eos_newline_needs_an_eos_set(toy_models):
    res = runner.invoke(cli.app, ["sample", "-m", "toy", "--regex", "a", "--eos-newline"])
    assert res.exit_code == 2 and "`--eos-newline` needs a model with an EOS set" in res.stderr


def test_bench_lists_and_runs_scripts(monkeypatch, tmp_path):
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    (bench / "_shared.py").write_text('"""Not a benchmark."""\n')
    (bench / "echo.py").write_text(
        '"""Echo the arguments."""\nimport sys\nprint("args", sys.argv[1:])\n'
        'sys.exit(3 if "--fail" in sys.argv else 0)\n'
    )
    monkeypatch.setattr(cli, "BENCH_DIR", bench)
    res = runner.invoke(cli.app, ["bench", "--list"])
    assert res.exit_code == 0 and res.stdout == "echo\tEcho the arguments.\n"
    res = runner.invoke(cli.app, ["bench", "echo", "--quick", "--no-write"])
    assert res.exit_code == 0
    res = runner.invoke(cli.app, ["bench", "echo", "--fail"])
    assert res.exit_code == 3
    res = runner.invoke(cli.app, ["bench", "nope"])
    assert res.exit_code == 2 and "`NAME` is 'nope'; choose one of echo" in res.stderr


def test_help_reads_like_the_readme():
    res = runner.invoke(cli.app, ["--help"])
    assert res.exit_code == 0
    for phrase in ("Correct constrained sampling", "log Z", "sample", "bench", "--regex"):
        assert phrase in res.stdout
    res = runner.invoke(cli.app, ["sample", "--help"])
    for option in ("--prompt", "--regex", "--json", "--grammar", "--particles", "--seed"):
        assert option in res.stdout
    res = runner.invoke(cli.app, ["bench", "--help"])
    for name in cli.benchmarks():
        assert name in res.stdout
    assert "lm_step" in cli.benchmarks()


def test_real_subprocess_help():
    out = subprocess.run(
        [sys.executable, "-m", "potentia.cli", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "Correct constrained sampling" in out.stdout and "bench" in out.stdout


@pytest.mark.real_model
def test_sample_on_smollm2(smollm):
    args = ["sample", "-m", "smollm2", "-p", "The capital of France is", "-n", "2", "-t", "3"]
    res = runner.invoke(
        cli.app, [*args, "--regex", " [A-Z][a-z]*", "--no-progress", "--eos-newline"]
    )
    assert res.exit_code == 0, res.output
    particles, summary = _lines(res.stdout)
    assert len(particles) == 2 and summary["model"] == "smollm2"
    for p in particles:
        assert p["status"] != "finished" or re.fullmatch(" [A-Z][a-z]*", p["text"])


def test_progress_hears_every_step():
    seen = []
    out = cli.sample_command(
        _toy(),
        "",
        pt.regex("(a|b)+"),
        particles=6,
        max_tokens=5,
        seed=1,
        on_step=lambda step, live, ess: seen.append((step, live, ess)),
    )
    # one call per engine step; the forced EOS at max_tokens (stop) may add one more step
    assert [s for s, _, _ in seen] == list(range(1, len(seen) + 1))
    assert out.n_steps - 1 <= len(seen) <= out.n_steps
    assert [e for _, _, e in seen] == out.ess_history[: len(seen)]
    assert all(0 <= live <= 6 for _, live, _ in seen)
