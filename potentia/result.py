"""The one result type every engine returns."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from potentia.potentials.base import logsumexp

__all__ = ["Result"]


@dataclass
class Result:
    """Weighted sequences of an inference run, with diagnostics.

    Attributes:
        contexts: Token-index sequence of every particle (EOS not included).
        texts: Decoded text of every particle.
        log_weights: Final log weight of every particle (``-inf`` for dead ones).
        log_z: Estimate of log Z, the log normaliser of the target (``-inf`` if all died).
        status: Per particle: ``"finished"``, ``"truncated"`` or ``"dead: <why>"``.
        ess_history: Effective sample size after each step's reweighting.
        resampled_at: Steps at which the particles were resampled.
        n_steps: Number of steps run.
        target_evals: Full next-token vectors computed by the proposal.
        constraint_checks: Single-token constraint evaluations.
        wall_time: Seconds.
        method: The engine and sampler that produced this result.
        message: A one-line account of the run (why it ended, what went wrong).
        extra: Engine-specific diagnostics.
    """

    contexts: list[list[int]]
    texts: list[str]
    log_weights: np.ndarray
    log_z: float
    status: list[str]
    ess_history: list[float] = field(default_factory=list)
    resampled_at: list[int] = field(default_factory=list)
    n_steps: int = 0
    target_evals: int = 0
    constraint_checks: int = 0
    wall_time: float = 0.0
    method: str = ""
    message: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def weights(self) -> np.ndarray:
        """Normalised weights of the finished particles (truncated and dead ones get 0)."""
        fin = np.array([s == "finished" for s in self.status], dtype=bool)
        lw = np.where(fin, np.asarray(self.log_weights, dtype=float), -np.inf)
        tot = logsumexp(lw)
        if tot == -np.inf:
            return np.zeros_like(lw)
        return np.exp(lw - tot)

    @property
    def ess(self) -> float:
        """Effective sample size of the final weights."""
        w = self.weights
        s = float((w**2).sum())
        return 0.0 if s == 0 else 1.0 / s

    @property
    def posterior(self) -> dict[str, float]:
        """Normalised weight of every distinct decoded text, largest first.

        Truncated particles are excluded (they are not strings of the target).
        """
        agg: dict[str, float] = defaultdict(float)
        for t, w in zip(self.texts, self.weights):
            if w > 0:
                agg[t] += float(w)
        tot = sum(agg.values())
        if tot == 0:
            return {}
        return dict(sorted(((k, v / tot) for k, v in agg.items()), key=lambda kv: -kv[1]))

    @property
    def unfinished(self) -> list[tuple[str, str]]:
        """``(text, status)`` of every particle that did not finish (dead or truncated).

        The text is the particle's prefix when it stopped (for a dead particle, without
        the token that killed it): what to read when a run fails.
        """
        return [(t, s) for t, s in zip(self.texts, self.status) if s != "finished"]

    @property
    def all_dead(self) -> bool:
        """Whether no particle survived."""
        return bool(self.weights.sum() == 0)

    def resample(self, rng: np.random.Generator, n: int) -> list[str]:
        """Draw ``n`` texts from the weighted particles (multinomial)."""
        w = self.weights
        if w.sum() == 0:
            raise ValueError(f"cannot resample: every particle died ({self.message}).")
        return [self.texts[i] for i in rng.choice(len(w), size=n, p=w)]

    def summary(self) -> str:
        """A short human-readable report."""
        counts = Counter(s.split(":")[0] for s in self.status)
        lines = [
            f"{self.method}: {len(self.texts)} particles, log Z = {self.log_z:.4f}, "
            f"ESS = {self.ess:.2f}, {self.n_steps} steps, {self.wall_time:.2f}s",
            f"status: {dict(counts)}; resampled at {len(self.resampled_at)} steps; "
            f"target evals {self.target_evals}, constraint checks {self.constraint_checks}",
        ]
        if self.message:
            lines.append(self.message)
        for text, p in list(self.posterior.items())[:10]:
            lines.append(f"  {p:8.4f}  {text!r}")
        return "\n".join(lines)

    def to_json(self) -> str:
        """The result as a JSON text (:meth:`from_json` reads it back).

        Non-finite floats (``-inf`` log weights) are written as ``{"__float__": "-inf"}``
        (or ``"inf"``, ``"nan"``) so that any JSON reader accepts the text; numpy arrays in
        ``extra`` become lists, other values that JSON cannot hold become their ``repr``.
        """
        d = {name: getattr(self, name) for name in self.__dataclass_fields__}
        d["log_weights"] = [float(w) for w in np.asarray(self.log_weights, dtype=float)]
        d["contexts"] = [[int(t) for t in c] for c in self.contexts]
        return json.dumps({"potentia.Result": 1, **_jsonable(d)})

    @classmethod
    def from_json(cls, text: str) -> Result:
        """Read a result written by :meth:`to_json` (``extra``'s arrays come back as lists).

        Raises:
            ValueError: if ``text`` is not JSON written by :meth:`to_json`.
        """
        try:
            d = json.loads(text)
        except (TypeError, json.JSONDecodeError) as e:
            raise ValueError(
                f"`text` is not JSON ({e}); pass the output of Result.to_json()."
            ) from e
        if not isinstance(d, dict) or d.pop("potentia.Result", None) != 1:
            raise ValueError("`text` was not written by Result.to_json(); pass its output.")
        d = _unjson(d)
        d["log_weights"] = np.asarray(d["log_weights"], dtype=float)
        d["log_z"] = float(d["log_z"])
        return cls(**d)

    def __repr__(self) -> str:
        return f"Result({self.summary()})"


_NONFINITE = {"-inf": -math.inf, "inf": math.inf, "nan": math.nan}


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, bool | np.bool_):
        return bool(x)
    if isinstance(x, int | np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        v = float(x)
        if math.isfinite(v):
            return v
        return {"__float__": "nan" if v != v else ("inf" if v > 0 else "-inf")}
    if x is None or isinstance(x, str):
        return x
    return repr(x)


def _unjson(x: Any) -> Any:
    if isinstance(x, dict):
        if set(x) == {"__float__"} and x["__float__"] in _NONFINITE:
            return _NONFINITE[x["__float__"]]
        return {k: _unjson(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_unjson(v) for v in x]
    return x
