"""Runs README code blocks that stand alone (issue 12 extends this to every block)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def section_blocks(heading: str) -> list[str]:
    """The Python code blocks of the README section under ``heading``."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n")
    end = text.find("\n#", start + len(heading) + 2)
    section = text[start : end if end != -1 else len(text)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_the_asyncio_block_runs() -> None:
    (block,) = section_blocks("### asyncio")
    namespace: dict[str, object] = {"__name__": "readme_asyncio"}
    exec(compile(block, "README.md (asyncio)", "exec"), namespace)
    users = namespace["users"]
    assert users.core.closed  # type: ignore[attr-defined]  # main() ran to its end
