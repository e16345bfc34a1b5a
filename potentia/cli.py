"""The ``potentia`` command line: constrained sampling to JSON Lines, and the benchmarks.

``potentia sample`` runs the same SMC as :func:`potentia.sample` (same sampler choice, same
seeded random stream, so the same particles for the same seed), composed from
:mod:`potentia.smc.engine`'s ``init`` / ``step`` / ``stop`` / ``finish`` so that a rich
progress bar can follow the steps. ``potentia bench NAME`` runs ``benchmarks/NAME.py``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["app", "main", "MODELS", "BENCH_DIR", "benchmarks", "sample_command"]


def _gemma() -> Any:
    from potentia.lm import LM

    return LM.default()


def _smollm2() -> Any:
    from potentia.lm import LM

    return LM.smollm2()


#: Models ``--model`` can name: ``name -> loader()`` returning a model object with
#: ``.potential(prompt)`` (tests add toy models here).
MODELS: dict[str, Callable[[], Any]] = {"gemma": _gemma, "smollm2": _smollm2}

#: Where ``potentia bench`` finds its scripts: ``benchmarks/`` of the source checkout.
BENCH_DIR: Path = Path(__file__).resolve().parents[1] / "benchmarks"

HELP = """\
Correct constrained sampling from language models.

Declare what a good output is (a regex, a grammar, a JSON Schema) and potentia returns
properly weighted samples of LM(x | prompt) · constraint(x), with an estimate of log Z,
the log probability that the LM's output satisfies the constraint. Nothing is downloaded:
the models are the embedded Gemma 3 270M (default) and SmolLM2 135M Instruct.

Examples:

\b
  potentia sample --prompt "The capital of France is" --regex " [A-Z][a-z]+\\." -n 8
  potentia sample --prompt "A user:" --json schema.json -t 48 -o out.jsonl
  potentia sample --prompt "2+2=" --grammar arith.lark --model smollm2 --seed 1
  potentia bench --list
"""

app = typer.Typer(
    name="potentia",
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
_err = Console(stderr=True)


def _fail(message: str) -> None:
    """Print ``message`` to stderr and exit with status 2 (bad usage)."""
    _err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


def _finite(x: float) -> float | None:
    """JSON has no infinities: ``-inf`` (zero weight) is written as ``null``."""
    return float(x) if math.isfinite(x) else None


def _read(path: Path, option: str) -> str:
    if not path.is_file():
        _fail(
            f"`{option}` is {str(path)!r}, which is not a file; pass the path of an existing file."
        )
    return path.read_text(encoding="utf-8")


def _constraint(regex: str | None, json_file: Path | None, grammar: Path | None):
    """The byte-level constraint named by at most one of the three options (or ``None``)."""
    given = [
        n
        for n, v in (("--regex", regex), ("--json", json_file), ("--grammar", grammar))
        if v is not None
    ]
    if len(given) > 1:
        _fail(f"{' and '.join(given)} were both given; pass at most one constraint option.")
    import potentia as pt

    try:
        if regex is not None:
            return pt.regex(regex)
        if json_file is not None:
            try:
                schema = json.loads(_read(json_file, "--json"))
            except json.JSONDecodeError as e:
                _fail(
                    f"`--json` file {str(json_file)!r} is not JSON ({e}); pass a JSON Schema file."
                )
            return pt.json(schema)
        if grammar is not None:
            return pt.cfg(_read(grammar, "--grammar"))
    except (ValueError, TypeError) as e:
        _fail(f"{given[0]}: {e}")
    return None


def sample_command(
    model: Any,
    prompt: str,
    constraint: Any,
    *,
    particles: int,
    max_tokens: int,
    seed: int,
    ess_threshold: float = 0.5,
    resampling: str = "multinomial",
    on_step: Callable[[int, int, float], None] | None = None,
):
    """SMC as :func:`potentia.sample` runs it, reporting each step to ``on_step``.

    Args:
        model: A model object with ``.potential(prompt)``.
        prompt: The prompt text.
        constraint: A potential (byte-level ones are lifted), or ``None``.
        particles: Number of particles.
        max_tokens: Largest number of generated tokens.
        seed: The seed of the run's ``numpy.random.Generator``.
        ess_threshold: Resample when ESS < threshold · particles.
        resampling: The resampling scheme's name.
        on_step: Called as ``on_step(step, live_particles, ess)`` after every step.

    Returns:
        The run's :class:`potentia.result.Result`.
    """
    from potentia import api
    from potentia.smc import engine
    from potentia.smc.resampling import get_scheme

    engine.validate_run_args(particles, max_tokens, ess_threshold, "force_eos", "particles")
    api._check_context_window(model, prompt, max_tokens)
    lm = api._lm_potential(model, prompt)
    c = api._coerce_constraint(constraint, lm.vocab)
    name = "awrs" if (c is not None and c.hard and "awrs" in api.SAMPLERS) else "direct"
    kernel = engine.SMCKernel(
        api.SAMPLERS[name](lm, c), None, None, float(ess_threshold), get_scheme(resampling)
    )
    engine.check_kernel(kernel)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    p = engine.init(kernel, particles)
    while len(p.live) and p.step < max_tokens:
        engine.step(kernel, p, rng)
        if on_step is not None:
            on_step(p.step, len(p.live), p.ess_history[-1])
    if len(p.live):
        engine.stop(kernel, p, "force_eos")
    return engine.finish(kernel, p, time.perf_counter() - t0, None)


@app.command()
def sample(
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The prompt text.")] = "",
    regex: Annotated[
        str | None, typer.Option("--regex", "-r", help="The whole output must match this regex.")
    ] = None,
    json_file: Annotated[
        Path | None,
        typer.Option("--json", help="A JSON Schema file: the output is a valid JSON document."),
    ] = None,
    grammar: Annotated[
        Path | None,
        typer.Option("--grammar", help="A Lark or GBNF grammar file the output must derive."),
    ] = None,
    particles: Annotated[int, typer.Option("--particles", "-n", help="Number of particles.")] = 16,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", "-t", help="Most generated tokens.")
    ] = 32,
    seed: Annotated[int, typer.Option("--seed", "-s", help="Seed of the run.")] = 0,
    model: Annotated[
        str, typer.Option("--model", "-m", help="gemma (Gemma 3 270M) or smollm2 (SmolLM2 135M).")
    ] = "gemma",
    eos_newline: Annotated[
        bool, typer.Option("--eos-newline", help="A newline also ends an output.")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the JSON Lines here, not stdout.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
) -> None:
    """Sample LM(x | prompt) · constraint(x) with SMC and write JSON Lines.

    One line per particle, {"text", "weight", "log_weight", "status"} (weight: normalised,
    0 for unfinished particles; log_weight null when zero), then one summary line,
    {"summary": true, "log_z", "ess", "posterior", "message", ...}. With no constraint
    option the LM itself is sampled.
    """
    if particles < 1:
        _fail(f"`--particles` is {particles}; pass an integer >= 1.")
    if max_tokens < 1:
        _fail(f"`--max-tokens` is {max_tokens}; pass an integer >= 1.")
    if model not in MODELS:
        _fail(f"`--model` is {model!r}; choose one of {', '.join(sorted(MODELS))}.")
    constraint = _constraint(regex, json_file, grammar)  # checked before any model is loaded
    with _err.status(f"loading {model}", spinner="dots"):
        lm = MODELS[model]()
    if eos_newline:
        if not hasattr(lm, "with_eos"):
            _fail(f"`--eos-newline` needs a model with an EOS set; {model!r} has none.")
        lm = lm.with_eos([*lm.eos_ids, "\n"])
    bar = Progress(
        TextColumn("smc"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("live {task.fields[live]}  ESS {task.fields[ess]}"),
        TimeElapsedColumn(),
        console=_err,
        disable=not progress,
        transient=True,
    )
    with bar:
        task = bar.add_task("smc", total=max_tokens, live=particles, ess="-")

        def on_step(step: int, live: int, ess: float) -> None:
            bar.update(task, completed=step, live=live, ess=f"{ess:.1f}")

        try:
            out = sample_command(
                lm,
                prompt,
                constraint,
                particles=particles,
                max_tokens=max_tokens,
                seed=seed,
                on_step=on_step,
            )
        except (ValueError, TypeError) as e:
            _fail(str(e))
    lines = [
        {"text": t, "weight": float(w), "log_weight": _finite(lw), "status": s}
        for t, w, lw, s in zip(out.texts, out.weights, out.log_weights, out.status)
    ]
    lines.append(
        {
            "summary": True,
            "log_z": _finite(out.log_z),
            "ess": float(out.ess),
            "particles": particles,
            "posterior": out.posterior,
            "method": out.method,
            "message": out.message,
            "wall_time": out.wall_time,
            "model": model,
            "seed": seed,
        }
    )
    text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
    _err.print(out.message, highlight=False)


def benchmarks() -> dict[str, str]:
    """The runnable benchmark scripts: ``name -> first line of its docstring``."""
    out = {}
    for path in sorted(BENCH_DIR.glob("*.py")) if BENCH_DIR.is_dir() else []:
        if path.stem.startswith("_"):
            continue
        doc = ""
        for line in path.read_text(encoding="utf-8").splitlines():
            s = line.strip().strip('r"').strip()
            if s:
                doc = s
                break
        out[path.stem] = doc
    return out


def _bench_help() -> str:
    names = benchmarks()
    listing = "\n".join(f"  {n}: {d}" for n, d in names.items()) or "  (no benchmarks/ here)"
    return (
        "Run benchmarks/NAME.py with this Python; arguments after NAME go to the script "
        "(e.g. --quick, --no-write; put -- first for its own help: "
        "potentia bench lm_step -- --help).\n\nBenchmarks:\n\n\b\n" + listing
    )


@app.command(
    help=_bench_help(),
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def bench(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="The benchmark to run.")] = None,
    list_: Annotated[bool, typer.Option("--list", "-l", help="List the benchmarks.")] = False,
) -> None:
    """Run a named benchmark script with the current Python (its exit status is returned)."""
    names = benchmarks()
    if list_ or name is None:
        if not names:
            _fail(f"no benchmark scripts in {BENCH_DIR}; run potentia from a source checkout.")
        for n, d in names.items():
            typer.echo(f"{n}\t{d}")
        raise typer.Exit(0)
    if name not in names:
        _fail(f"`NAME` is {name!r}; choose one of {', '.join(names) or '(none found)'}.")
    cmd = [sys.executable, str(BENCH_DIR / f"{name}.py"), *ctx.args]
    raise typer.Exit(subprocess.call(cmd, cwd=BENCH_DIR.parent))


def main() -> None:
    """Entry point of the ``potentia`` console script."""
    app()


if __name__ == "__main__":
    main()
