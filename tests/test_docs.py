"""Every ```python block of README.md and docs/**/*.md runs as written.

Blocks run page by page, in order, in one namespace per page (a later block sees the names
an earlier one defined; pages never share names), with the working directory set to a
temporary folder. A block fenced ```python no-run is skipped, and the paragraph right before
it must say why it does not run (it must contain "not run", "no-run", "never run" or the
like). Any other fence whose language starts with ``py`` is refused, so a block cannot
escape the harness by a spelling (```py, ```python3, ```pycon).

A page whose blocks construct a real LM (``LM.default()``, ``LM.smollm2()``,
``LM.from_pretrained``, ``pt.LM(``) is marked ``real_model``; the embedded loaders return
one shared object per process, so pages reuse the loaded models.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<ticks>`{3,}|~{3,})\s*(?P<info>[^`\n]*)$")
REAL_MODEL = re.compile(r"LM\.default\(|LM\.smollm2\(|LM\.from_pretrained\(|\bpt\.LM\(")
WHY = re.compile(
    r"no-run|\b(not|never|n't)\s+(be\s+)?(run|executed)\b|\bdoes not run\b|\bisn't run\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Block:
    """One fenced code block: its language tag, first code line (1-based) and source."""

    info: str
    line: int
    source: str
    before: str  # the paragraph right before the fence


def pages() -> list[Path]:
    """README.md and every Markdown page under docs/, in a stable order."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text (top-level fences; tildes or backticks)."""
    lines = text.splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        ticks, info = m["ticks"], m["info"].strip()
        j = i + 1
        while j < len(lines) and not re.match(
            rf"^ {{0,3}}{re.escape(ticks[0])}{{{len(ticks)},}}\s*$", lines[j]
        ):
            j += 1
        para: list[str] = []
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        while k >= 0 and lines[k].strip():
            para.insert(0, lines[k])
            k -= 1
        out.append(Block(info, i + 2, "\n".join(lines[i + 1 : j]) + "\n", " ".join(para)))
        i = j + 1
    return out


def python_blocks(path: Path) -> list[Block]:
    return [b for b in blocks(path.read_text(encoding="utf-8")) if b.info.startswith("py")]


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name


def _params(only_with_code: bool = True):
    out = []
    for p in pages():
        code = [b for b in python_blocks(p) if b.info == "python"]
        if only_with_code and not code:
            continue
        real = any(REAL_MODEL.search(b.source) for b in code)
        marks = [pytest.mark.real_model] if real else []
        out.append(pytest.param(p, id=_rel(p), marks=marks))
    return out


def run_page(path: Path, namespace: dict | None = None) -> dict:
    """Execute the runnable python blocks of ``path`` in order, in one namespace.

    The code is compiled with the page's file name and line numbers, so a traceback points
    at the Markdown line that failed.
    """
    ns: dict = {"__name__": f"docs:{_rel(path)}"} if namespace is None else namespace
    for b in python_blocks(path):
        if b.info != "python":
            continue
        code = compile("\n" * (b.line - 1) + b.source, str(path), "exec")
        exec(code, ns)  # noqa: S102 - running the documentation is the point
    return ns


@pytest.mark.parametrize("page", _params())
def test_page_runs(page: Path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_page(page)


@pytest.mark.parametrize("page", _params(only_with_code=False))
def test_fences_are_known_and_no_run_says_why(page: Path):
    for b in python_blocks(page):
        where = f"{_rel(page)}:{b.line - 1}"
        assert b.info in ("python", "python no-run"), (
            f"{where}: fence ```{b.info} is neither ```python (run by tests/test_docs.py) "
            "nor ```python no-run; use one of the two."
        )
        if b.info == "python no-run":
            assert WHY.search(b.before), (
                f"{where}: a ```python no-run block must follow a sentence saying why it is "
                f"not run (e.g. 'This block is not run: it needs a GPU.'); found {b.before!r}."
            )


# ----- the harness itself ---------------------------------------------------------------
SAMPLE = """# T

Intro.

```python
x = 1
```

Text in between.

```python
y = x + 1
```

This one is not run: it needs a GPU.

```python no-run
raise SystemExit("never")
```

````markdown
```python
inside_a_markdown_example = True
```
````
"""


def test_harness_parses_and_shares_names_within_a_page(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(SAMPLE)
    bs = python_blocks(page)
    assert [b.info for b in bs] == ["python", "python", "python no-run"]
    assert [b.line for b in bs] == [6, 12, 18]
    assert "not run" in bs[2].before
    ns = run_page(page)
    assert ns["y"] == 2 and "inside_a_markdown_example" not in ns


def test_harness_reports_the_markdown_line(tmp_path):
    page = tmp_path / "bad.md"
    page.write_text("# Bad\n\n```python\nok = 1\nundefined_name\n```\n")
    with pytest.raises(NameError) as err:
        run_page(page)
    tb = err.traceback[-1]
    assert Path(str(tb.path)) == page and tb.lineno + 1 == 5


def test_harness_finds_the_docs():
    found = {_rel(p) for p in pages()}
    assert "README.md" in found and "docs/architecture.md" in found
    assert sum(len(python_blocks(p)) for p in pages()) >= 5
