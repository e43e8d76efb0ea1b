"""Writing rendered files into a directory, and unified diffs against one.

Input: {relative path: text}. Output: the files under DIR, and `DIR/.meshforge-files`, the list of
what meshforge wrote there. What holds, whatever the input and whatever happens to the process:

- **Nothing meshforge did not write is touched.** The list records every file with the SHA-256 of
  the bytes meshforge wrote. A listed file is replaced or removed only while it still holds exactly
  those bytes, so neither a forged list nor a user's edit can make meshforge delete or overwrite
  anything else; an unlisted file where meshforge wants to write is an error, and nothing is written.
- **Symlinks inside DIR are never followed**, for writing, removing or reading: every path is
  opened one component at a time from a descriptor of DIR with O_NOFOLLOW. A symlinked file or
  sub-directory is refused (render) or reported without being read (diff).
- **Interrupted renders recover (a journal, replayed by the next run).**
  1. *stage*: every new file, and the new list, is written into DIR/.meshforge-tx/ (the same file
     system, so the renames below are atomic);
  2. *commit*: DIR/.meshforge-tx/journal (which staged file goes where, which files go, the new list)
     is written and renamed into place. From here on the render is decided;
  3. *apply*: the renames and removals, then the new list, then .meshforge-tx is deleted.
  A run killed before the commit leaves staging without a journal: the next render deletes it and DIR
  is as it was. A run killed after it leaves the journal: the next render replays it first (every step
  is idempotent), and `diff` reports the directory as an unfinished render (never "up to date").
  Ctrl-C and SIGTERM before the commit remove the staging; after it they wait until apply is done.
  Renders into one DIR are serialised by a lock on DIR. (This protects against the process dying,
  not against power loss: nothing is fsynced.)
- Files get the mode the umask gives (0666 & ~umask), as any tool's output does.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import fcntl
import hashlib
import json
import os
import re
import signal
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST = ".meshforge-files"
STAGING = ".meshforge-tx"
JOURNAL = "journal"
_NEW_MANIFEST = "manifest"
_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class OutputError(Exception):
    """A render or diff that cannot be done without breaking a guarantee above; nothing was changed."""


@dataclass
class WriteResult:
    written: int = 0
    unchanged: int = 0
    removed: int = 0
    kept: list[str] = field(default_factory=list)  # listed files a user changed: left in place, unlisted


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _parts(rel: str) -> list[str]:
    """The components of a path meshforge may write: relative, plain names, no '..', no hidden files."""
    parts = rel.split("/")
    if not parts or len(parts) > 8 or not all(_COMPONENT.fullmatch(p) and p not in (".", "..") for p in parts):
        raise OutputError(f"refusing to write {rel!r}: not a plain relative path inside the output directory")
    return parts


def _is_plain(rel: str) -> bool:
    try:
        _parts(rel)
        return True
    except OutputError:
        return False


# -- descriptors, never following links ----------------------------------------------------------

def _open_dir(root: int, parts: list[str], create: bool = False) -> int:
    fd = os.dup(root)
    try:
        for p in parts:
            try:
                nfd = os.open(p, _O_DIR, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(p, 0o777, dir_fd=fd)
                nfd = os.open(p, _O_DIR, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise OutputError(f"{p!r} inside the output directory is a symlink or not a directory; "
                                      "meshforge never follows links there") from None
                raise
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def _read(dir_fd: int, name: str) -> bytes | None:
    """A regular file's bytes; None when absent. OutputError for a link or anything not a regular file."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise OutputError(f"{name!r} is a symlink; meshforge never follows links in the output directory") from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OutputError(f"{name!r} is not a regular file")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _read_rel(root: int, rel: str) -> bytes | None:
    *dirs, name = _parts(rel)
    try:
        d = _open_dir(root, dirs)
    except FileNotFoundError:
        return None
    try:
        return _read(d, name)
    finally:
        os.close(d)


def _write_new(dir_fd: int, name: str, data: bytes) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o666,
                 dir_fd=dir_fd)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


# -- the list of what meshforge wrote ---------------------------------------------------------

_OWNER = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")


def _entries(text: str) -> dict[str, tuple[str | None, str | None]]:
    """path -> (SHA-256 of what meshforge wrote, the output format that wrote it). A digest of None: a
    list from before hashes were recorded; an owner of None: from before owners were (any render owns it)."""
    out: dict[str, tuple[str | None, str | None]] = {}
    for line in text.splitlines():
        digest, sep, rest = line.partition("  ")
        owner: str | None = None
        if not sep:
            digest, rel = None, line  # an older list: paths only, trusted for meshforge's own kind of file
            if not rel.endswith(".yaml"):
                continue
        elif not re.fullmatch(r"[0-9a-f]{64}", digest):
            continue
        else:
            rel, _, owner = rest.partition("  ")
            owner = owner if _OWNER.fullmatch(owner) else None
        if _is_plain(rel) and rel != MANIFEST:
            out[rel] = (digest, owner)
    return out


def parse_manifest(text: str) -> dict[str, str | None]:
    """path -> SHA-256 of what meshforge wrote (None: a list from before hashes were recorded)."""
    return {rel: digest for rel, (digest, _) in _entries(text).items()}


def _manifest_text(entries: dict[str, tuple[str, str | None]]) -> str:
    lines = []
    for rel, (digest, owner) in sorted(entries.items()):
        lines.append(f"{digest}  {rel}  {owner}\n" if owner else f"{digest}  {rel}\n")
    return "".join(lines)


def _ours(owner: str | None, listed_owner: str | None) -> bool:
    """Whether a render for `owner` manages a listed file: its own, and those of lists without owners."""
    return owner is None or listed_owner is None or listed_owner == owner


def managed_files(out: Path) -> list[str]:
    """The files meshforge lists as its own in `out` (links and oddities never read)."""
    try:
        root = os.open(out, _O_DIR & ~os.O_NOFOLLOW)
    except OSError:
        return []
    try:
        data = _read(root, MANIFEST)
    except OutputError:
        return []
    finally:
        os.close(root)
    return sorted(parse_manifest(data.decode("utf-8", "replace"))) if data else []


# -- the transaction ---------------------------------------------------------------------------

@contextlib.contextmanager
def _signals_as_interrupts():
    """SIGTERM raises KeyboardInterrupt like Ctrl-C does, so the staging is cleaned up (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def _signals_deferred():
    """After the commit: let apply finish; pending SIGINT/SIGTERM are delivered afterwards."""
    mask = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, mask)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _remove_staging(root: int) -> None:
    try:
        tx = os.open(STAGING, _O_DIR, dir_fd=root)
    except FileNotFoundError:
        return
    except OSError:
        os.unlink(STAGING, dir_fd=root)  # a link or a file in its place: remove the name, never follow it
        return
    try:
        names = os.listdir(tx)
        for name in sorted(names, key=lambda n: n == JOURNAL):  # the journal goes last
            with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
                os.unlink(name, dir_fd=tx)
    finally:
        os.close(tx)
    with contextlib.suppress(FileNotFoundError, OSError):
        os.rmdir(STAGING, dir_fd=root)


def _prune_empty(root: int, dirs: list[str]) -> None:
    while dirs:
        parent = _open_dir(root, dirs[:-1])
        try:
            os.rmdir(dirs[-1], dir_fd=parent)
        except OSError:
            return
        finally:
            os.close(parent)
        dirs = dirs[:-1]


def _apply(root: int, journal: dict) -> None:
    """Carry out a committed journal. Idempotent: a replay after a crash finishes what is left."""
    tx = os.open(STAGING, _O_DIR, dir_fd=root)
    try:
        for staged, rel in journal["put"]:
            *dirs, name = _parts(rel)
            try:
                os.stat(staged, dir_fd=tx, follow_symlinks=False)
            except FileNotFoundError:
                continue  # already in place
            d = _open_dir(root, dirs, create=True)
            try:
                os.rename(staged, name, src_dir_fd=tx, dst_dir_fd=d)
            finally:
                os.close(d)
        for rel, digest in journal["remove"]:
            *dirs, name = _parts(rel)
            try:
                d = _open_dir(root, dirs)
            except (FileNotFoundError, OutputError):
                continue
            try:
                data = _read(d, name)
                if data is not None and (digest is None or _sha(data) == digest):
                    os.unlink(name, dir_fd=d)
            except OutputError:
                pass  # a link now stands there: not ours to remove
            finally:
                os.close(d)
            _prune_empty(root, dirs)
        with contextlib.suppress(FileNotFoundError):
            os.rename(_NEW_MANIFEST, MANIFEST, src_dir_fd=tx, dst_dir_fd=root)
    finally:
        os.close(tx)
    _remove_staging(root)


def _recover(root: int) -> None:
    """Finish a committed render that was interrupted; drop the staging of one that never committed."""
    try:
        tx = os.open(STAGING, _O_DIR, dir_fd=root)
    except FileNotFoundError:
        return
    except OSError:
        _remove_staging(root)
        return
    try:
        data = _read(tx, JOURNAL)
    except OutputError:
        data = None
    finally:
        os.close(tx)
    if data is None:
        _remove_staging(root)
        return
    with _signals_deferred():
        _apply(root, json.loads(data))


def _lock(root: int) -> None:
    try:
        fcntl.flock(root, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise OutputError("another meshforge render is writing this directory") from None


def write_tree(out: Path, files: dict[str, str], owner: str | None = None) -> WriteResult:
    """Make `out` hold `files` (and remove what meshforge wrote there before and no longer produces).
    `owner` (the output format) lets several formats share one directory: a render manages only the
    files its own format wrote, and refuses a path another format wrote."""
    out.mkdir(parents=True, exist_ok=True)
    root = os.open(out, _O_DIR & ~os.O_NOFOLLOW)  # DIR itself may be a link the user chose; inside, none
    try:
        _lock(root)
        _recover(root)
        return _render(root, files, owner)
    finally:
        os.close(root)


def _render(root: int, files: dict[str, str], owner: str | None = None) -> WriteResult:
    data = _read(root, MANIFEST)
    listed = _entries(data.decode("utf-8", "replace")) if data is not None else {}
    previous = {rel: digest for rel, (digest, o) in listed.items() if _ours(owner, o)}
    # what other formats wrote stays listed, untouched
    entries: dict[str, tuple[str, str | None]] = {rel: e for rel, e in listed.items() if rel not in previous}
    others = [rel for rel in sorted(files) if rel in entries]
    if others:
        raise OutputError(f"{len(others)} file(s) in the output directory were written by another format "
                          f"(--format {entries[others[0]][1]}): {', '.join(others[:5])}{' ...' if len(others) > 5 else ''}; "
                          "render each format into a directory of its own")
    result = WriteResult()
    puts: list[tuple[str, bytes]] = []
    refused: list[str] = []
    for rel in sorted(files):
        body = files[rel].encode()
        digest = _sha(body)
        entries[rel] = (digest, owner)
        current = _read_rel(root, rel)
        if current is None:
            puts.append((rel, body))
        elif rel not in previous or (previous[rel] is not None and _sha(current) != previous[rel]):
            refused.append(rel)
        elif current == body:
            result.unchanged += 1
        else:
            puts.append((rel, body))
    if refused:
        raise OutputError(f"{len(refused)} file(s) in the output directory were not written by meshforge, or "
                          f"were changed since: {', '.join(refused[:5])}{' ...' if len(refused) > 5 else ''}; "
                          "move them away (meshforge never overwrites them), or render into another directory")
    removes = []
    for rel in sorted(set(previous) - set(files)):
        try:
            current = _read_rel(root, rel)
        except OutputError:
            continue  # a link or a special file stands there now: not meshforge's to remove
        if current is None:
            continue
        if previous[rel] is None or _sha(current) == previous[rel]:
            removes.append((rel, previous[rel]))
        else:
            result.kept.append(rel)
    new_manifest = _manifest_text(entries)
    if not puts and not removes and data is not None and data.decode("utf-8", "replace") == new_manifest:
        return result
    with _signals_as_interrupts():
        try:
            os.mkdir(STAGING, 0o700, dir_fd=root)
            tx = os.open(STAGING, _O_DIR, dir_fd=root)
            try:
                journal: dict = {"put": [], "remove": removes}
                for i, (rel, body) in enumerate(puts):
                    _write_new(tx, f"{i:06d}", body)
                    journal["put"].append([f"{i:06d}", rel])
                _write_new(tx, _NEW_MANIFEST, new_manifest.encode())
                _write_new(tx, JOURNAL + ".new", json.dumps(journal).encode())
                with _signals_deferred():
                    os.rename(JOURNAL + ".new", JOURNAL, src_dir_fd=tx, dst_dir_fd=tx)  # the commit
                    os.close(tx)
                    tx = -1
                    _apply(root, journal)
            finally:
                if tx >= 0:
                    os.close(tx)
        except BaseException:
            _recover(root)  # before the commit: removes the staging; after it: finishes the render
            raise
    result.written = len(puts)
    result.removed = len(removes)
    return result


# -- diff --------------------------------------------------------------------------------------

def diff_tree(against: Path, files: dict[str, str], owner: str | None = None) -> str:
    """Unified diff from what is in `against` to what would be rendered; empty when identical. With an
    `owner` (the output format), files another format wrote there are not compared.

    Files are read without following links; a link or special file is reported as differing, unread.
    OutputError when `against` holds an unfinished render (its content is not what it will be).
    """
    root = os.open(against, _O_DIR & ~os.O_NOFOLLOW)
    try:
        try:
            os.stat(os.path.join(STAGING, JOURNAL), dir_fd=root, follow_symlinks=False)
            raise OutputError(f"{against} holds an unfinished render ({STAGING}/{JOURNAL}); run meshforge render "
                              f"-o {against} to finish it, then diff")
        except FileNotFoundError:
            pass
        data = _read(root, MANIFEST)
        old_names = ({rel for rel, (_, o) in _entries(data.decode("utf-8", "replace")).items() if _ours(owner, o)}
                     if data is not None else _yaml_files(root))
        chunks: list[str] = []
        for rel in sorted(old_names | set(files)):
            new = files.get(rel)
            try:
                raw = _read_rel(root, rel)
                old = raw.decode("utf-8", "replace") if raw is not None else None
            except OutputError as e:
                chunks.append(f"--- a/{rel}\n+++ b/{rel}\n@@ not compared: {e} @@\n")
                continue
            if old == new:
                continue
            a = f"a/{rel}" if old is not None else "/dev/null"
            b = f"b/{rel}" if new is not None else "/dev/null"
            chunks.extend(difflib.unified_diff((old or "").splitlines(keepends=True),
                                               (new or "").splitlines(keepends=True), a, b))
            if chunks and not chunks[-1].endswith("\n"):
                chunks[-1] += "\n"
        return "".join(chunks)
    finally:
        os.close(root)


def _yaml_files(root: int, prefix: str = "", depth: int = 0) -> set[str]:
    """*.yaml regular files under a directory with no list, walked without following links."""
    out: set[str] = set()
    d = _open_dir(root, prefix.split("/") if prefix else [])
    try:
        for entry in os.scandir(d):
            rel = f"{prefix}/{entry.name}" if prefix else entry.name
            if entry.name.startswith(".") or not _is_plain(rel):
                continue
            if entry.is_dir(follow_symlinks=False) and depth < 8:
                out |= _yaml_files(root, rel, depth + 1)
            elif entry.is_file(follow_symlinks=False) and entry.name.endswith(".yaml"):
                out.add(rel)
    finally:
        os.close(d)
    return out


def write_file_atomically(path: Path, text: str) -> None:
    """One file, whole or not at all: written beside its place, then renamed over it (mode from the umask)."""
    tmp = f".{path.name}.meshforge-{os.getpid()}.tmp"
    parent = os.open(path.parent, _O_DIR & ~os.O_NOFOLLOW)
    try:
        _write_new(parent, tmp, text.encode())
        os.replace(tmp, path.name, src_dir_fd=parent, dst_dir_fd=parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=parent)
        raise
    finally:
        os.close(parent)
