"""Every ```python block of README.md runs as written (issue 17, point 9).

The blocks run in order in one namespace — as a reader pastes them into one Python session —
in a temporary working directory (files they write stay there), with no prelude. A block that
genuinely cannot run here (e.g. it needs several hosts) opts out with an HTML comment on the line
right before its opening fence::

    <!-- readme-test: skip (needs several hosts) -->

and the reason is mandatory. Everything else in the README that is a ```python block is executed,
including sections added later.
"""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*\((?P<why>[^)]+)\)\s*-->\s*$")
FENCE = re.compile(r"^```python[ \t]*\n(?P<code>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def python_blocks(text: str) -> list[tuple[int, str, str | None]]:
    """``(line number, code, skip reason or None)`` for every ```python block, in order."""
    blocks = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = SKIP.search(before)
        blocks.append((line, match.group("code"), skip.group("why") if skip else None))
    return blocks


def test_the_extraction_finds_blocks_and_honours_only_explicit_skips():
    text = "a\n```python\nx = 1\n```\n<!-- readme-test: skip (needs 2 hosts) -->\n```python\ny\n```\n```bash\nls\n```\n"
    assert python_blocks(text) == [(2, "x = 1\n", None), (6, "y\n", "needs 2 hosts")]


@pytest.mark.slow
def test_every_readme_python_block_runs(tmp_path, monkeypatch, capsys):
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 3, "the README's python blocks were not found"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    for line, code, skip in blocks:
        if skip is not None:
            continue
        try:
            exec(compile(code, f"README.md:{line}", "exec"), namespace)  # noqa: S102 - our own README
        except Exception as error:
            raise AssertionError(f"the README's python block at line {line} fails: {error!r}") from error
    out = capsys.readouterr().out
    # The training loop's promises: it learns, and the resumed fit numbers its epochs 2 and 3.
    accuracy = [float(a) for a in re.findall(r"test accuracy (\d\.\d+)", out)]
    assert len(accuracy) == 3 and accuracy[-1] > 0.85, out
    assert "[2, 3]" in out, out
