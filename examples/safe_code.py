r"""Vulnerability-avoiding code completion: a ban-list over generated Solidity.

The target is Gemma 3 270M's completion of a Solidity function body, conditioned on the
completion containing none of these patterns (what the ban-list bans, exactly):

* ``tx.origin`` anywhere (the literal text): authenticating with ``tx.origin`` lets any
  contract the owner calls act as the owner (SWC-115);
* an **unchecked low-level call**: a statement that *begins* with a call of ``call``,
  ``delegatecall`` or ``send`` on an address expression, i.e. a match of :data:`UNCHECKED`
  (line start, optional spaces, a name followed by ``.member``, ``(...)`` or ``[...]``
  parts, then ``.call``/``.delegatecall``/``.send`` and ``(`` or ``{``), such as
  ``to.call{value: amount}("");`` or ``payable(owner).send(x);`` (SWC-104). A call whose
  result is used (``(bool ok, ) = to.call{value: amount}("");``, ``require(to.send(x));``,
  ``bool ok = to.send(x);``) does not begin the statement and is allowed. Statements are
  assumed to start on their own line (the completion starts on a new line).

Both bans are prefix-closed (once a banned pattern occurs, no continuation removes it), so
the exact prefix test is "no banned pattern in the text so far": ``pt.excludes`` (an
Aho–Corasick automaton) for the literal, ``pt.predicate(..., level="prefix")`` running
``UNCHECKED.search`` at every character boundary for the regex. Neither pattern needs to
see past its last character, so a prefix is cut at the exact character that completes a
ban.

    .venv/bin/python examples/safe_code.py [--particles 8] [--max-tokens 24]
"""

from __future__ import annotations

import argparse
import os
import re
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import potentia as pt  # noqa: E402

BANNED_LITERALS = ("tx.origin",)
UNCHECKED = re.compile(
    r"^[ \t]*[A-Za-z_]\w*(?:\.\w+|\([^()\n;]*\)|\[[^\]\n;]*\])*\.(?:call|delegatecall|send)\s*[({]",
    re.MULTILINE,
)
PROMPT = """// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

contract Wallet {
    address public owner;

    constructor() {
        owner = msg.sender;
    }

    // Send `amount` wei to `to`; only the owner may withdraw.
    function withdraw(address payable to, uint256 amount) external {
"""


def banned(text: str) -> list[str]:
    """The banned patterns that occur in ``text`` (empty list: the text is allowed)."""
    hits = [t for t in BANNED_LITERALS if t in text]
    return hits + [m.group(0).strip() for m in UNCHECKED.finditer(text)]


def constraint() -> pt.Potential:
    """The ban-list: no literal of :data:`BANNED_LITERALS`, no match of :data:`UNCHECKED`."""
    return pt.excludes(*BANNED_LITERALS) & pt.predicate(
        lambda text: UNCHECKED.search(text) is None, level="prefix"
    )


def show_prefix_checks(c: pt.Potential) -> None:
    """The prefix test on a few completions (-inf: a banned pattern has occurred)."""
    for text in [
        "        require(msg.sender == owner);\n",
        "        require(tx.origin == owner);\n",
        '        (bool ok, ) = to.call{value: amount}("");\n        require(ok);\n',
        '        to.call{value: amount}("");\n',
        "        payable(owner).send(amount);\n",
        "        to.callback(amount);\n",
    ]:
        print(f"  prefix {c.prefix(list(text.encode())):>4}  {text!r}")


def main(
    lm: pt.LM | None = None, particles: int = 8, max_tokens: int = 24, seed: int = 0
) -> pt.Result:
    """Complete :data:`PROMPT` under the ban-list; print the weighted completions."""
    t0 = time.perf_counter()
    lm = lm if lm is not None else pt.LM.default()
    c = constraint()
    print(f"ban-list: literals {BANNED_LITERALS}, regex {UNCHECKED.pattern!r}")
    show_prefix_checks(c)
    out = pt.sample(
        lm, PROMPT, c, particles=particles, max_tokens=max_tokens, seed=seed, progress=False
    )
    print(f"\n{out.message}; log Ẑ = {out.log_z:.2f} (log P(no banned pattern | prompt), est.)")
    for text, p in list(out.posterior.items())[:4]:
        print(f"  {p:6.3f}  {text!r}  banned: {banned(text) or 'none'}")
    print(f"({time.perf_counter() - t0:.1f} s)")
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="vulnerability-avoiding code completion")
    ap.add_argument("--particles", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    main(particles=a.particles, max_tokens=a.max_tokens, seed=a.seed)
