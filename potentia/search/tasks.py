r"""Real search tasks with programmatic verifiers and exact value functions.

**Countdown** (Game-of-24 style). An instance is a multiset of numbers and a target.
A solution is a sequence of lines ``"a+b=c\n"`` (also ``-``, ``*``, ``/``): each line takes
two of the remaining numbers ``a`` and ``b`` and replaces them by ``c``, the result of
the operation, with the rules

* ``a - b`` only when ``a >= b`` (no negative numbers),
* ``a / b`` only when ``b`` divides ``a`` (``b > 0``),

until one number is left; the solution is correct when that number is the target.

* :meth:`Countdown.constraint` is the *move constraint*: a byte-level hard potential
  (a :func:`potentia.regex` of the finite language of well-formed move sequences over
  the remaining numbers, with EOS allowed exactly when one number is left). Lifted to an
  LM's vocabulary it lets even a 135M model propose only legal steps, so the search only
  decides *which* move. It is built from :func:`legal_moves` and checked against brute
  force in ``tests/search/test_tasks.py``.
* :func:`solvable` is the exact value function ("can the target still be reached from
  these numbers?"), by memoised search over multisets.
* :meth:`Countdown.verify` checks a finished text from scratch in Python.
* :meth:`Countdown.scorer` turns the value function into a PRM over step texts: exact,
  noisy (flipped with a fixed probability per state), or an LM judge; malformed steps
  score 0 without calling the judge.

Floors: :func:`greedy` (argmax decoding of ``LM × moves``) and :func:`random_solver`
(uniformly random legal moves, no LM; :meth:`Countdown.random_success` is its exact
success probability).

**Keyword coverage** (CommonGen style): write one sentence that uses every keyword.
:meth:`Keywords.coverage` is the fraction of keywords present as words (a keyword
matches a word that starts with it, so ``dog`` matches ``dogs``), :meth:`Keywords.reward`
a step reward over sentences, and :meth:`Keywords.constraint` the hard version
(:func:`potentia.contains` of every keyword).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from potentia.constraints.lexical import contains
from potentia.constraints.regex import Regex
from potentia.potentials.base import Potential, Vocabulary
from potentia.search.step_potentials import StepPotential, lm_judge

__all__ = [
    "Countdown",
    "countdown_instances",
    "legal_moves",
    "solvable",
    "solutions",
    "greedy",
    "random_solver",
    "Keywords",
    "keyword_instances",
    "CONCEPTS",
]

Numbers = tuple[int, ...]

#: Countdown prompt: the rules and two solved examples, then the instance.
COUNTDOWN_PROMPT = (
    "Reach the target by combining two numbers per line with + - * /.\n\n"
    "Numbers: 2 3 5\nTarget: 25\n2+3=5\n5*5=25\n\n"
    "Numbers: 4 6 9\nTarget: 15\n9-4=5\n6+5=11\n"
)
_LINE = re.compile(r"(\d+)([-+*/])(\d+)=(\d+)")


def _apply(a: int, op: str, b: int) -> int | None:
    """The result of ``a op b`` under the rules, or ``None`` when the move is illegal."""
    if op == "+":
        return a + b
    if op == "*":
        return a * b
    if op == "-":
        return a - b if a >= b else None
    return a // b if b > 0 and a % b == 0 else None


def legal_moves(numbers: Sequence[int]) -> list[tuple[str, Numbers]]:
    r"""Every legal line after ``numbers`` and the numbers left after it (sorted).

    A line is ``f"{a}{op}{b}={c}\n"`` for two positions ``i != j`` (``a = numbers[i]``,
    ``b = numbers[j]``); equal lines (from equal numbers) are listed once.
    """
    nums = list(numbers)
    out: dict[str, Numbers] = {}
    for i, j in itertools.permutations(range(len(nums)), 2):
        a, b = nums[i], nums[j]
        rest = [nums[k] for k in range(len(nums)) if k not in (i, j)]
        for op in "+-*/":
            c = _apply(a, op, b)
            if c is not None:
                out.setdefault(f"{a}{op}{b}={c}\n", tuple(sorted([*rest, c])))
    return list(out.items())


@functools.lru_cache(maxsize=200_000)
def _solvable(numbers: Numbers, target: int) -> bool:
    if len(numbers) == 1:
        return numbers[0] == target
    return any(_solvable(rest, target) for _, rest in legal_moves(numbers))


def solvable(numbers: Sequence[int], target: int) -> bool:
    """The exact value function: whether ``target`` can be reached from ``numbers``."""
    return _solvable(tuple(sorted(int(n) for n in numbers)), int(target))


def solutions(numbers: Sequence[int], target: int | None = None) -> list[str]:
    """Every complete move sequence (text) from ``numbers``; only correct ones if ``target``."""
    nums = tuple(sorted(numbers))
    if len(nums) == 1:
        return [""] if target is None or nums[0] == target else []
    return [
        line + tail
        for line, rest in legal_moves(nums)
        for tail in solutions(rest, target)
        if target is None or _solvable(rest, target)
    ]


@functools.lru_cache(maxsize=4096)
def _pattern(numbers: Numbers) -> str:
    """The regex of every complete move sequence from ``numbers`` (factored by move)."""
    if len(numbers) == 1:
        return ""
    alts = [re.escape(line) + _pattern(rest) for line, rest in legal_moves(numbers)]
    return "(?:" + "|".join(alts) + ")"


@dataclass(frozen=True)
class Countdown:
    """One Countdown instance.

    Attributes:
        numbers: The starting numbers (sorted).
        target: The number to reach.
    """

    numbers: Numbers
    target: int

    @property
    def question(self) -> str:
        """The instance as text (also the question an LM judge sees)."""
        return f"Numbers: {' '.join(map(str, self.numbers))}\nTarget: {self.target}\n"

    def prompt(self) -> str:
        """The few-shot prompt that ends where the first move starts."""
        return COUNTDOWN_PROMPT + "\n" + self.question

    def constraint(self) -> Regex:
        """The move constraint (byte level; lift it to an LM's vocabulary)."""
        return Regex(_pattern(self.numbers))

    @property
    def max_lines(self) -> int:
        """Number of moves in a complete solution."""
        return len(self.numbers) - 1

    def state(self, steps: Sequence[str]) -> Numbers | None:
        r"""The numbers left after the step texts ``steps``, or ``None`` if one is illegal.

        Each step must be exactly one legal line (its ``"\n"`` included).
        """
        nums = self.numbers
        for s in steps:
            moves = dict(legal_moves(nums))
            if s not in moves:
                return None
            nums = moves[s]
        return nums

    def value(self, steps: Sequence[str]) -> float:
        """Exact value of a partial solution: 1 if it is legal and can still succeed."""
        nums = self.state(steps)
        return float(nums is not None and solvable(nums, self.target))

    def verify(self, text: str) -> bool:
        """Whether ``text`` is a complete correct solution (checked from scratch)."""
        if not text.endswith("\n") and text:
            return False
        pool = list(self.numbers)
        lines = text.split("\n")[:-1] if text else []
        for line in lines:
            m = _LINE.fullmatch(line)
            if m is None:
                return False
            a, op, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
            for x in (a, b):
                if x not in pool:
                    return False
                pool.remove(x)
            if _apply(a, op, b) != c:
                return False
            pool.append(c)
        return len(pool) == 1 and pool[0] == self.target

    def scorer(
        self,
        kind: str = "exact",
        *,
        flip: float = 0.25,
        confidence: float = 0.9,
        seed: int = 0,
        judge: Any = None,
    ) -> Callable[[list[str]], float]:
        """A PRM over step texts: ``score(steps) -> r in [0, 1]``.

        Args:
            kind: ``"exact"`` (the value function, 0 or 1), ``"noisy"`` (the value
                function flipped with probability ``flip`` per state, answering
                ``confidence`` or ``1 - confidence``), or ``"judge"`` (an LM judge:
                P(" Yes") / (P(" Yes") + P(" No")) after a judge prompt).
            flip: Flip probability of the noisy scorer (fixed per state and ``seed``).
            confidence: What the noisy scorer answers for a state it calls solvable.
            seed: Seed of the noisy scorer's flips.
            judge: The judging model for ``kind="judge"`` (e.g. the LM itself).

        Malformed steps (not legal moves over the remaining numbers) score 0 without
        calling the judge.
        """
        if kind not in ("exact", "noisy", "judge"):
            raise ValueError(f"`kind` is {kind!r}; choose 'exact', 'noisy' or 'judge'.")
        if not 0.0 <= flip <= 1.0 or not 0.5 <= confidence <= 1.0:
            raise ValueError("`flip` must be in [0, 1] and `confidence` in [0.5, 1].")
        judged = None
        if kind == "judge":
            if judge is None:
                raise ValueError("kind='judge' needs `judge=` (a model such as potentia.LM).")
            judged = lm_judge(judge)

        def score(steps: list[str]) -> float:
            nums = self.state(steps)
            if nums is None:
                return 0.0
            if kind == "exact":
                return float(solvable(nums, self.target))
            if kind == "noisy":
                v = solvable(nums, self.target)
                key = f"{seed}|{self.numbers}|{self.target}|{nums}".encode()
                u = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2.0**64
                return confidence if v != (u < flip) else 1.0 - confidence
            return judged(self.question, list(steps))

        return score

    def prm(
        self, vocab: Vocabulary, kind: str = "exact", mode: str = "ratio", **kw
    ) -> StepPotential:
        r""":meth:`scorer` as a step potential over ``vocab`` (steps end at ``"\n"``)."""
        return StepPotential(vocab, self.scorer(kind, **kw), "\n", mode=mode)

    def random_success(self) -> float:
        """Exact success probability of :func:`random_solver` (uniform legal moves)."""
        return _random_success(self.numbers, self.target)


@functools.lru_cache(maxsize=200_000)
def _random_success(numbers: Numbers, target: int) -> float:
    if len(numbers) == 1:
        return float(numbers[0] == target)
    moves = legal_moves(numbers)
    return sum(_random_success(rest, target) for _, rest in moves) / len(moves)


def countdown_instances(
    rng: np.random.Generator | int,
    n: int,
    n_numbers: int = 3,
    low: int = 1,
    high: int = 9,
    targets: tuple[int, int] = (10, 60),
) -> list[Countdown]:
    """``n`` distinct solvable instances: random numbers, the target from random legal play.

    Args:
        rng: Seed or generator.
        n: Number of instances.
        n_numbers: Numbers per instance (2 to 5 keeps brute force instant).
        low: Smallest starting number.
        high: Largest starting number.
        targets: Inclusive range of targets; the target is the last number of a uniformly
            random legal play, redrawn until it falls in the range and the instance is new.
    """
    if not 2 <= n_numbers <= 5:
        raise ValueError(f"`n_numbers` is {n_numbers}; pass 2 to 5.")
    if not 1 <= low <= high:
        raise ValueError(f"`low`={low}, `high`={high}; pass 1 <= low <= high.")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    out: list[Countdown] = []
    for _ in range(1000 * n):
        if len(out) == n:
            break
        nums = tuple(sorted(int(x) for x in rng.integers(low, high + 1, n_numbers)))
        state = nums
        while len(state) > 1:
            moves = legal_moves(state)
            state = moves[int(rng.integers(len(moves)))][1]
        task = Countdown(nums, state[0])
        if targets[0] <= task.target <= targets[1] and task not in out:
            out.append(task)
    if len(out) < n:
        raise ValueError(f"found only {len(out)} instances; widen `targets` or the numbers.")
    return out


def greedy(target: Potential, max_tokens: int) -> list[int]:
    """Greedy decoding: the argmax token of ``target.logw_next`` until EOS (a floor).

    Ties go to the lowest index; returns the token list (EOS excluded).
    """
    V = len(target.vocab)
    ctx: list[int] = []
    while len(ctx) < max_tokens:
        lw = target.logw_next(ctx)
        a = int(np.argmax(lw))
        if a == V or lw[a] == -np.inf:
            break
        ctx.append(a)
    return ctx


def random_solver(task: Countdown, rng: np.random.Generator | int | None = None) -> str:
    """A solution of uniformly random legal moves (no LM; a floor)."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    nums, text = task.numbers, ""
    while len(nums) > 1:
        moves = legal_moves(nums)
        line, nums = moves[int(rng.integers(len(moves)))]
        text += line
    return text


# ----- keyword coverage (CommonGen style) ------------------------------------------------
#: Concept words (nouns and verbs) that keyword instances are drawn from.
CONCEPTS = (
    "dog cat ball run jump tree river boat fish sun rain car road book read child "
    "play park eat apple table chair sit walk water drink bird fly sky garden flower"
).split()

_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class Keywords:
    """One keyword-coverage instance: write a sentence that uses every keyword.

    Attributes:
        words: The keywords (lower case).
    """

    words: tuple[str, ...]

    def prompt(self) -> str:
        """A few-shot prompt ending where the sentence starts."""
        return (
            "Write one short sentence that uses all the given words.\n\n"
            "Words: cat, milk, drink\nSentence: The cat likes to drink warm milk.\n\n"
            f"Words: {', '.join(self.words)}\nSentence:"
        )

    def covered(self, text: str) -> list[str]:
        """The keywords that occur in ``text`` as the start of a word (case-insensitive)."""
        words = _WORD.findall(text.lower())
        return [k for k in self.words if any(w.startswith(k) for w in words)]

    def coverage(self, text: str) -> float:
        """Fraction of the keywords covered by ``text``."""
        return len(self.covered(text)) / len(self.words)

    def reward(self, vocab: Vocabulary, unit: object = " ", mode: str = "ratio") -> StepPotential:
        """A soft step potential: r = (1 + keywords covered so far) / (1 + keywords).

        Positive everywhere (so ``ratio`` mode stays sound) and non-decreasing along a
        string; ``unit=" "`` scores at every word boundary.
        """
        k = len(self.words)
        return StepPotential(
            vocab, lambda steps: (1 + len(self.covered("".join(steps)))) / (1 + k), unit, mode=mode
        )

    def constraint(self, max_length: int | None = None) -> Potential:
        """The hard version: every keyword must occur (:func:`potentia.contains`)."""
        return contains(*self.words, max_length=max_length)


def keyword_instances(rng: np.random.Generator | int, n: int, k: int = 3) -> list[Keywords]:
    """``n`` distinct instances of ``k`` keywords drawn from :data:`CONCEPTS`."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    out: list[Keywords] = []
    for _ in range(1000 * n):
        if len(out) == n:
            break
        kw = Keywords(tuple(sorted(rng.choice(CONCEPTS, size=k, replace=False).tolist())))
        if kw not in out:
            out.append(kw)
    if len(out) < n:
        raise ValueError(f"found only {len(out)} distinct keyword sets; lower `n` or `k`.")
    return out
