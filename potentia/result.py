"""The one result type every engine returns."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
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
        logw_history: SMC only: array ``(steps, N)`` of every particle's log weight after
            each step's reweighting (before any resampling; row ``k`` gives
            ``ess_history[k]``). Empty for the other engines.
        ancestors: SMC only: array ``(len(resampled_at), N)``; row ``e`` holds the
            ancestor of every particle at the ``e``-th resampling event (particle ``j``
            after it copies particle ``ancestors[e, j]`` before it). See :meth:`ancestry`.
        parser: Reads a finished text into a Python value for :attr:`values`
            (``pt.sample`` sets it for JSON constraints: ``json.loads``, or a Pydantic
            model's ``model_validate_json``); ``None``: no values. Not serialised by
            :meth:`to_json` (only its kind, see :meth:`from_json`).
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
    logw_history: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    ancestors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    parser: Callable[[str], Any] | None = field(default=None, repr=False, compare=False)

    @property
    def values(self) -> list[Any]:
        """The parsed value of every particle, aligned with :attr:`texts` and :attr:`weights`.

        For a run with a JSON constraint (``pt.json(schema)``) these are the Python values
        (``json.loads``), and for a Pydantic model its validated instances. A particle that
        is not finished, or whose text does not parse or validate, has ``None`` (its reason
        is in :attr:`value_errors`); finished texts of an exact run are in the schema's
        language, so they all parse.

        Raises:
            ValueError: if the run has no parser (no structured constraint).
        """
        if self.parser is None:
            raise ValueError(
                "this Result has no `parser`: values exist for runs with a JSON constraint "
                "(pt.json(schema or Pydantic model)); set `result.parser` (e.g. json.loads)."
            )
        return [v for v, _ in self._parsed()]

    @property
    def value_errors(self) -> list[str | None]:
        """Per particle, why :attr:`values` holds ``None`` (``None`` where it parsed)."""
        if self.parser is None:
            return [None] * len(self.texts)
        return [e for _, e in self._parsed()]

    def _parsed(self) -> list[tuple[Any, str | None]]:
        out: list[tuple[Any, str | None]] = []
        for text, status in zip(self.texts, self.status):
            if status != "finished":
                out.append((None, f"not finished ({status})"))
                continue
            try:
                out.append((self.parser(text), None))
            except Exception as e:  # noqa: BLE001 - reported per particle
                out.append((None, f"{type(e).__name__}: {str(e)[:200]}"))
        return out

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
        d = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "parser"}
        if self.parser is not None:
            d["parser"] = "json" if self.parser is json.loads else "custom"
        d["log_weights"] = [float(w) for w in np.asarray(self.log_weights, dtype=float)]
        d["contexts"] = [[int(t) for t in c] for c in self.contexts]
        return json.dumps({"potentia.Result": 1, **_jsonable(d)})

    @classmethod
    def from_json(cls, text: str, parser: Callable[[str], Any] | None = None) -> Result:
        """Read a result written by :meth:`to_json` (``extra``'s arrays come back as lists).

        Args:
            text: The output of :meth:`to_json`.
            parser: The :attr:`parser` of the result read back. ``None``: ``json.loads``
                if the written result had a parser (a Pydantic model's is not written:
                pass ``Model.model_validate_json`` to get instances back), else none.

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
        had = d.pop("parser", None)
        if parser is not None and not callable(parser):
            raise TypeError(f"`parser` is {parser!r}; pass a callable (text -> value) or None.")
        d["parser"] = parser if parser is not None else (json.loads if had else None)
        d["log_weights"] = np.asarray(d["log_weights"], dtype=float)
        d["log_z"] = float(d["log_z"])
        n = len(d["log_weights"])
        for name, dtype in (("logw_history", float), ("ancestors", np.int64)):
            if name in d:
                rows = d[name]
                d[name] = np.array(rows, dtype=dtype).reshape(len(rows), n)
        return cls(**d)

    # ----- looking at a run (plots, HTML, tables) -------------------------------------
    def ancestry(self) -> np.ndarray:
        """The lineage of every final particle through the resampling events.

        Returns:
            An int array ``(len(resampled_at) + 1, N)``: entry ``[e, j]`` is the index,
            during epoch ``e`` (epoch 0: before the first resampling; the last row: after
            the last one, ``arange(N)``), of the particle that final particle ``j``
            descends from. Row 0 is each particle's founder. Without resampling (or for
            engines other than SMC) it is the single row ``arange(N)``.
        """
        n = len(self.texts)
        anc = np.asarray(self.ancestors, dtype=np.int64).reshape(-1, n) if n else self.ancestors
        rows = [np.arange(n)]
        for a in anc[::-1]:
            rows.append(a[rows[-1]])
        return np.array(rows[::-1], dtype=np.int64).reshape(len(rows), n)

    def plot(self, *, figsize: tuple[float, float] = (8.0, 7.5)) -> Any:
        """A matplotlib figure of an SMC run (needs ``pip install matplotlib``).

        Three panels sharing the step axis: every particle's log weight after each step,
        the ESS with the resampling events marked, and the ancestry (one line per final
        particle, back to its founder). Returns the ``Figure`` and never calls ``show()``.

        A result that recorded only ``ess_history`` gets the ESS panel alone.

        Raises:
            ValueError: if the result has no per-step record (the trie and search
                engines); :meth:`plot_posterior` works for every result.
            ImportError: if matplotlib is not installed.
        """
        from potentia.plots import plot_run

        return plot_run(self, figsize=figsize)

    def plot_posterior(
        self,
        top: int = 20,
        compare: Mapping[str, Mapping[str, float] | Result] | None = None,
        *,
        figsize: tuple[float, float] | None = None,
    ) -> Any:
        """A bar chart of :attr:`posterior` (largest ``top`` texts), as a matplotlib ``Figure``.

        Args:
            top: How many texts to show (the most probable under this result).
            compare: Other distributions drawn beside this one, by label: a mapping
                ``{text: probability}`` (e.g. an exact target) or another ``Result``.
            figsize: Figure size in inches (``None``: from the number of bars).
        """
        from potentia.plots import plot_posterior

        dists: dict[str, Any] = {self.method or "result": self.posterior}
        dists.update(compare or {})
        return plot_posterior(dists, top=top, figsize=figsize)

    def _repr_html_(self) -> str:
        """The run as an HTML table (what a notebook shows): texts coloured by weight."""
        from potentia.plots import result_html

        return result_html(self)

    def to_frame(
        self,
        fields: Callable[[str], Mapping[str, Any]]
        | Sequence[Mapping[str, Any] | None]
        | None = None,
    ) -> Any:
        """One row per particle as a pandas ``DataFrame`` (needs ``pip install pandas``).

        Columns: ``text``, ``log_weight``, ``weight`` (normalised over the finished
        particles, as :attr:`weights`), ``status``, ``n_tokens``, ``founder`` (the particle
        of the first epoch this one descends from, see :meth:`ancestry`), then one column
        per field when ``fields`` is given. The index is the particle number.

        Args:
            fields: Named values of each particle: a function of a finished text (e.g.
                ``template.fields``; unfinished particles get no values) or one mapping
                (or ``None``) per particle (e.g. ``template.fields_of(result)``).

        Raises:
            ImportError: if pandas is not installed.
            ValueError: if ``fields`` is a sequence of the wrong length.
        """
        try:
            import pandas as pd
        except ImportError as e:
            raise ImportError(
                "Result.to_frame() needs pandas: `pip install pandas` "
                "(or the extra: `pip install potentia[frames]`)."
            ) from e
        n = len(self.texts)
        cols: dict[str, Any] = {
            "text": list(self.texts),
            "log_weight": np.asarray(self.log_weights, dtype=float),
            "weight": self.weights,
            "status": list(self.status),
            "n_tokens": [len(c) for c in self.contexts],
            "founder": self.ancestry()[0],
        }
        if fields is not None:
            if callable(fields):
                rows = [
                    fields(t) if s == "finished" else None for t, s in zip(self.texts, self.status)
                ]
            else:
                rows = list(fields)
                if len(rows) != n:
                    raise ValueError(
                        f"`fields` has {len(rows)} entries but the result has {n} particles; "
                        "pass one mapping (or None) per particle, or a function of the text."
                    )
            keys = list(dict.fromkeys(k for r in rows if r for k in r))
            clash = [k for k in keys if k in cols]
            if clash:
                raise ValueError(
                    f"`fields` names {clash} clash with the frame's own columns; rename them."
                )
            for k in keys:
                cols[k] = [r.get(k) if r else None for r in rows]
        return pd.DataFrame(cols, index=pd.RangeIndex(n, name="particle"))

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
