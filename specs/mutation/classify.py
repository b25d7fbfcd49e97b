"""Sort surviving mutants into the classes of specs/mutants.md, from their diffs alone.

Each class is a narrow, mechanical pattern over the changed line (a string literal
changed and nothing else, one keyword argument dropped, ...); anything that matches none
is ``manual`` and is classified by hand in specs/mutants.md. The argument for each class
is written once, there, not here.
"""

from __future__ import annotations

import re

_STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'")
_MESSAGE = re.compile(
    r"reader\.(take|u32)\(|check_version_ttl\(|ttl_seconds\(|super\(\)\.__init__\(client"
)
"""Calls whose string argument only ever reaches an exception message."""
_EFFECT = re.compile(r"\b(Effect|self\.values|self\.versions|self\.both)\(")


def changed_lines(diff: str) -> tuple[list[str], list[str]]:
    """The removed and added lines of a unified diff, stripped."""
    removed = [
        line[1:].strip() for line in diff.splitlines() if line[:1] == "-" and line[:3] != "---"
    ]
    added = [
        line[1:].strip() for line in diff.splitlines() if line[:1] == "+" and line[:3] != "+++"
    ]
    return removed, added


def _without_strict(line: str) -> str:
    return re.sub(r",\s*\)", ")", re.sub(r",?\s*strict=\w+", "", line))


def _strings_only(old: str, new: str) -> bool:
    """Only string literals differ (a literal replaced by ``None`` counts as one)."""
    plain = _STRING.sub('"S"', old)
    return old != new and plain in (
        _STRING.sub('"S"', new),
        _STRING.sub('"S"', new).replace("None", '"S"', 1),
    )


def classify(name: str, diff: str) -> str:
    """The class of one surviving mutant (see specs/mutants.md), or ``manual``."""
    removed, added = changed_lines(diff)
    old, new = " ".join(removed), " ".join(added)
    if "__repr__" in name:
        return "repr"
    if "strict=True" in old and _without_strict(old) == _without_strict(new):
        return "zip-strict"
    for found in re.finditer(r"\b(self\.default_ttl|ttl)\b", old):
        if old[: found.start()] + "None" + old[found.end() :] == new:
            return "ttl-dropped"
    if _strings_only(old, new):
        if any(part in name for part in ("queue_wait", "_invalidate_and_wait", "_glob_escape")):
            return "manual"  # strings that reach Redis: judged one by one
        if _MESSAGE.search(old):
            return "error-text"
        if "call_hook(" in old:
            return "hook-args"
        if _EFFECT.search(old):
            return "effect-label"
        return "op-name"
    if "call_hook(" in old or (removed and removed[0].startswith("self.hooks.")):
        return "hook-args"
    return "manual"
