"""sample_many: one pt.sample run per prompt, here or on a real local Ray cluster.

The Ray tests start a real local cluster (``ray.init(num_cpus=2)``) once per module and
kill a real worker process mid-run; every result must come back equal to the sequential
``pt.sample`` run with the same seed, in prompt order, once.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import signal
import sys
import time
import warnings
from collections import Counter

import numpy as np
import pytest

import potentia as pt
from potentia.many import ManyResults, prompt_seeds, sample_many
from potentia.models import DFA, ToyLM, random_ngram

NGRAM = random_ngram(np.random.default_rng(0), 3, order=2)
TOY = ToyLM(NGRAM)
LOADER = functools.partial(ToyLM, NGRAM)  # a zero-argument picklable loader
#: a DFA with dead ends (state 0 has no "c"), accepting in state 1
DELTA = np.array([[1, 0, -1], [1, 1, 0]])
C = DFA(TOY.vocab, DELTA, accepting=[1])
KW = dict(particles=4, max_tokens=6)


def prompts(n: int) -> list[list[int]]:
    return [[i % 3, (i // 3) % 3, (i // 9) % 3, (i // 27) % 3] for i in range(n)]


def key(r: pt.Result) -> dict:
    """Everything a result holds but its wall time (to_json: exact floats, -inf spelled)."""
    d = json.loads(r.to_json())
    d.pop("wall_time")
    return d


class Counting(ToyLM):
    """A toy model that counts how often it is asked for a potential (an LM call needs one)."""

    calls = 0

    def potential(self, prompt=()):
        Counting.calls += 1
        return super().potential(prompt)


# ----- seeds ----------------------------------------------------------------------------
def test_prompt_seeds_spawn_children_that_depend_only_on_seed_and_index():
    s = prompt_seeds(5, 10)
    assert s == prompt_seeds(5, 10)
    assert prompt_seeds(5, 3) == s[:3]
    assert len(set(s)) == 10 and s != prompt_seeds(6, 10)
    child = np.random.SeedSequence(5, spawn_key=(7,))
    assert s[7] == int(child.generate_state(1, dtype=np.uint64)[0])


# ----- here (workers=None) --------------------------------------------------------------
def test_here_equals_pt_sample_with_the_derived_seeds():
    ps = prompts(12)
    out = sample_many(TOY, ps, C, seed=3, **KW)
    assert isinstance(out, ManyResults) and len(out) == 12
    assert out.seeds == prompt_seeds(3, 12) and out.entropy == 3
    assert (out.workers, out.workers_lost, out.retried, out.not_run) == (0, 0, [], [])
    for i, p in enumerate(ps):
        assert key(out[i]) == key(pt.sample(TOY, p, C, seed=out.seeds[i], **KW))
    # the same runs from a loader spec, and with a constraint factory
    again = sample_many(LOADER, ps, lambda: DFA(TOY.vocab, DELTA, accepting=[1]), seed=3, **KW)
    assert [key(r) for r in again] == [key(r) for r in out]


def test_one_constraint_per_prompt_and_none():
    ps = prompts(6)
    cs = [None, C, C, None, DFA(TOY.vocab, DELTA, accepting=[0, 1]), C]
    out = sample_many(TOY, ps, cs, seed=1, **KW)
    for i in range(6):
        assert key(out[i]) == key(pt.sample(TOY, ps[i], cs[i], seed=out.seeds[i], **KW))


def test_seed_none_records_its_entropy():
    out = sample_many(TOY, prompts(3), C, seed=None, **KW)
    assert out.seeds == prompt_seeds(out.entropy, 3)


def test_on_result_sees_every_prompt_once():
    seen = []
    out = sample_many(TOY, prompts(5), C, on_result=lambda i, r: seen.append((i, r)), **KW)
    assert [i for i, _ in seen] == list(range(5))
    assert all(r is out[i] for i, r in seen)


def test_time_limit_ends_the_call_and_marks_prompts_not_run():
    n = 400
    out = sample_many(TOY, prompts(n), C, time_limit=0.05, **KW)
    assert len(out) == n and out.not_run, "400 toy runs take far longer than 50 ms"
    assert out.not_run == list(range(out.not_run[0], n))  # a tail, in order
    for i in out.not_run:
        r = out[i]
        assert r.status == [] and r.texts == [] and r.log_z == -np.inf
        assert r.message.startswith("not run:") and "time_limit" in r.message
    for i in range(out.not_run[0]):
        assert out[i].status  # genuine runs (the last may have been stopped by the budget)


# ----- bad input: clear errors before any model load or LM call -----------------------
BAD = [
    (dict(prompts=[]), ValueError, "`prompts` is empty"),
    (dict(prompts="abc"), TypeError, "`prompts` is str"),
    (dict(prompts=[[0], 3.5]), TypeError, r"`prompts\[1\]`"),
    (dict(constraint=[C, C]), ValueError, "list of 2 constraints but `prompts` has 3"),
    (dict(constraint=[C, 5, C]), TypeError, r"`constraint\[1\]` is int"),
    (dict(workers=0), ValueError, "`workers` is 0"),
    (dict(workers=True), ValueError, "`workers` is True"),
    (dict(workers="cluster"), ValueError, "`workers` is 'cluster'"),
    (dict(address="auto"), ValueError, "`address` names a Ray cluster but `workers` is None"),
    (dict(seed=1.5), TypeError, "`seed` is 1.5"),
    (dict(seed=-1), ValueError, "`seed` is -1"),
    (dict(max_retries=-1), ValueError, "`max_retries` is -1"),
    (dict(chunk_size=0), ValueError, "`chunk_size` is 0"),
    (dict(on_result=3), TypeError, "`on_result` is 3"),
    (dict(particles=0), ValueError, "particles"),
    (dict(time_limit=-1), ValueError, "`time_limit` is -1"),
    (dict(resampling="bogus"), ValueError, "bogus"),
    (dict(method="nope"), ValueError, "`method` is 'nope'"),
    (dict(seed_typo=1), TypeError, "seed_typo"),
    (dict(model="gemma-9000"), ValueError, "neither a model name"),
    (dict(workers=2), TypeError, "Ray workers cannot share"),  # a model object, not a loader
]


@pytest.mark.parametrize("change, exc, match", BAD, ids=[m for _, _, m in BAD])
def test_bad_input_fails_before_any_lm_call(change, exc, match):
    Counting.calls = 0
    args = dict(model=Counting(NGRAM), prompts=prompts(3), constraint=C, **KW)
    args.update(change)
    with pytest.raises(exc, match=match):
        sample_many(**args)
    assert Counting.calls == 0


def test_constraint_factories_pass_the_front_door_checks_of_any_method():
    from potentia.many import _check_kwargs, _HardStandIn

    _check_kwargs({"method": "cars", "particles": 2}, _HardStandIn())  # built on the worker
    with pytest.raises(ValueError, match="needs a hard `constraint`"):
        _check_kwargs({"method": "cars"}, None)


def test_ray_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'potentia\[ray\]'"):
        sample_many(LOADER, prompts(3), C, workers=2, **KW)


def test_unpicklable_constraint_for_ray_asks_for_a_factory():
    pytest.importorskip("ray")
    with pytest.raises(TypeError, match=r"cannot be sent to a Ray worker.*functools.partial"):
        sample_many(LOADER, prompts(3), pt.regex("a+"), workers=2, **KW)


# ----- a real local Ray cluster ---------------------------------------------------------
@pytest.fixture(scope="module")
def ray_cluster():
    """A real local Ray cluster of 2 CPUs, shut down after the module.

    Ray 2.60's raylet gives its dashboard agent a fixed 15 s to report its port; on a machine
    whose CPUs are saturated the agent can miss it and the start fails. The start is tried up
    to three times (the failed start's process handles are collected with their
    ResourceWarnings silenced, since Ray leaves them behind).
    """
    ray = pytest.importorskip("ray")
    for attempt in range(3):
        failed = None
        try:
            ray.init(
                num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="potentia-test"
            )
        except Exception as e:  # noqa: BLE001 - Ray raises a bare Exception on a slow start
            if "timed out during startup" not in str(e) or attempt == 2:
                raise
            failed = str(e)
        if failed is None:
            break
        ray.shutdown()  # outside the except block: the traceback no longer holds the node
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
    yield ray
    ray.shutdown()


def pid_loader(folder):
    """A toy loader that leaves ``<pid>`` (holding the load time) in ``folder`` when it runs."""

    def load():  # a local function: pickled by value, so the worker need not import tests/
        (folder / str(os.getpid())).write_text(str(time.time_ns()))
        return ToyLM(NGRAM)

    return load


#: a failed Ray start leaves process handles behind; their __del__ warns when collected
RAY_LEFTOVERS = "ignore:subprocess \\d+ is still running:ResourceWarning"


@pytest.mark.filterwarnings(RAY_LEFTOVERS)
def test_ray_kill_a_worker_mid_run_loses_and_duplicates_nothing(ray_cluster, tmp_path):
    n = 1000
    ps = prompts(n)
    seeds = prompt_seeds(11, n)
    sequential = [pt.sample(TOY, ps[i], C, seed=seeds[i], **KW) for i in range(n)]
    arrived = Counter()
    killed = []

    def on_result(i, r):
        arrived[i] += 1
        if not killed and sum(arrived.values()) >= 100:
            # the worker that loaded first has been working longest: it has chunks in flight
            pid = min(tmp_path.iterdir(), key=lambda f: int(f.read_text())).name
            os.kill(int(pid), signal.SIGKILL)
            killed.append(int(pid))

    out = sample_many(
        pid_loader(tmp_path), ps, C, workers=2, seed=11, chunk_size=25, on_result=on_result, **KW
    )
    assert killed and out.workers_lost == 1
    # one model load per actor: the 2 first, and the fresh one if it loaded before the end
    assert out.workers == 3 and 2 <= len(list(tmp_path.iterdir())) <= 3
    assert out.retried, "the killed worker had prompts in flight; they must have run again"
    assert out.not_run == [] and out.seeds == seeds
    assert sorted(arrived) == list(range(n)) and set(arrived.values()) == {1}
    assert len(out) == n
    for i in range(n):
        assert key(out[i]) == key(sequential[i]), i


@pytest.mark.filterwarnings(RAY_LEFTOVERS)
def test_ray_time_limit_returns_every_prompt_without_hanging(ray_cluster):
    n = 1000  # about 3 s of toy runs: more than the budget, even on a warm actor
    ps = prompts(n)
    out = sample_many(LOADER, ps, C, workers=1, seed=4, time_limit=1.0, **KW)
    assert len(out) == n and out.not_run and out.workers_lost == 0
    seeds = prompt_seeds(4, n)
    for i, r in enumerate(out):
        if i in out.not_run:
            assert r.status == [] and "time_limit" in r.message
        elif "stopped_by" not in r.extra:  # ran to the end within the budget: the same run
            assert key(r) == key(pt.sample(TOY, ps[i], C, seed=seeds[i], **KW))


@pytest.mark.real_model
@pytest.mark.slow  # ~25 s on the busy 2-core machine: a fresh actor imports torch, loads SmolLM2
@pytest.mark.filterwarnings(RAY_LEFTOVERS)
def test_ray_smollm2_equals_sequential(ray_cluster, smollm):
    ps = ["The capital of France is", "2 + 2 ="]
    pattern = r" ?[A-Za-z0-9]{1,8}"
    kw = dict(particles=2, max_tokens=3)
    out = sample_many("smollm2", ps, functools.partial(pt.regex, pattern), workers=1, seed=2, **kw)
    assert out.workers == 1 and out.workers_lost == 0
    for i, p in enumerate(ps):
        ref = pt.sample(smollm, p, pt.regex(pattern), seed=out.seeds[i], **kw)
        assert key(out[i]) == key(ref)
