"""Writing rendered files: all-or-nothing into a directory, and unified diffs against one.

Input: {relative path: text}. Output: files under DIR plus `DIR/.meshforge-files` (the list of what
meshforge wrote, so that files it no longer produces are removed and nothing else is touched).
"""

from __future__ import annotations

import difflib
import os
import tempfile
from pathlib import Path

MANIFEST = ".meshforge-files"


def _safe(rel: str) -> str:
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts:
        raise ValueError(f"refusing to write outside the output directory: {rel}")
    return p.as_posix()


def managed_files(out: Path) -> list[str]:
    m = out / MANIFEST
    if not m.is_file():
        return []
    return [line for line in m.read_text().splitlines() if line and _is_safe(line)]


def _is_safe(rel: str) -> bool:
    try:
        _safe(rel)
        return True
    except ValueError:
        return False


def write_tree(out: Path, files: dict[str, str]) -> tuple[int, int, int]:
    """Write `files` under `out`; remove files from the previous run that are no longer produced.

    Every file is first written to a temporary file beside its target, and only when all are written
    are they renamed into place: an error midway leaves the directory as it was.
    Returns (written, unchanged, removed).
    """
    out.mkdir(parents=True, exist_ok=True)
    previous = set(managed_files(out))
    staged: list[tuple[str, Path]] = []
    unchanged = 0
    try:
        for rel in sorted(files):
            target = out / _safe(rel)
            text = files[rel]
            if target.is_file() and target.read_text() == text:
                unchanged += 1
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".meshforge-", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                f.write(text)
            staged.append((rel, Path(tmp)))
        fd, tmp = tempfile.mkstemp(dir=out, prefix=".meshforge-", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write("".join(f"{rel}\n" for rel in sorted(files)))
        staged.append((MANIFEST, Path(tmp)))
    except BaseException:
        for _, tmp in staged:
            tmp.unlink(missing_ok=True)
        raise
    for rel, tmp in staged:
        os.replace(tmp, out / rel)
    removed = 0
    for rel in sorted(previous - set(files)):
        p = out / rel
        if p.is_file():
            p.unlink()
            removed += 1
            _prune_empty(p.parent, out)
    return len(staged) - 1, unchanged, removed


def _prune_empty(d: Path, top: Path) -> None:
    while d != top and d.is_dir() and not any(d.iterdir()):
        d.rmdir()
        d = d.parent


def diff_tree(against: Path, files: dict[str, str]) -> str:
    """Unified diff from what is in `against` to what would be rendered; empty when identical."""
    old_names = set(managed_files(against)) or {
        p.relative_to(against).as_posix() for p in against.rglob("*.yaml") if p.is_file()} if against.is_dir() else set()
    chunks = []
    for rel in sorted(old_names | set(files)):
        p = against / rel
        old = p.read_text() if p.is_file() else None
        new = files.get(rel)
        if old == new:
            continue
        a = f"a/{rel}" if old is not None else "/dev/null"
        b = f"b/{rel}" if new is not None else "/dev/null"
        chunks.extend(difflib.unified_diff((old or "").splitlines(keepends=True), (new or "").splitlines(keepends=True),
                                           a, b))
        if chunks and not chunks[-1].endswith("\n"):
            chunks[-1] += "\n"
    return "".join(chunks)
