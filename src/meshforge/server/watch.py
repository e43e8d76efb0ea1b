"""Watching the spec files with Linux inotify: complete changes at once, files being written never.

Input: the directories to watch (recursively) and which paths matter. Output: a callback per batch of
complete changes, with the files that changed (None when a directory came or went, or events were
lost: then anything may have changed), and what the reload needs to know to publish nothing half-written:
- a file renamed into place (IN_MOVED_TO), closed after writing (IN_CLOSE_WRITE), deleted or moved away
  is a complete change: reported at once, with no quiet period;
- a file being written (IN_MODIFY or IN_CREATE, not yet closed) is in `writing`: no change is reported
  while any relevant file is being written (up to `MAX_WRITE_WAIT`, then it is reported anyway);
- `modifications` counts writes; a reload that saw it change while it was reading discards its result,
  because it may have read a file in the middle of a write (the write's close reports it again).
Which paths are inputs, and which directories can hold them, is the compiler's to say (`source.Inputs`,
the rules `expand_paths` reads by): directories under hidden ones (`.git`) are not watched at all.
Why not watchfiles: it reports only "modified", not "closed after writing", so it can tell a complete
file from a half-written one only by waiting for a quiet period (10 ms at least, on every change).
The inotify calls are `inotify_simple`'s (a maintained binding) rather than ctypes of our own.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sys
import time
from typing import Callable, Protocol

from . import trace

log = logging.getLogger("meshforge.watch")

AVAILABLE = sys.platform.startswith("linux")
if AVAILABLE:
    from inotify_simple import INotify
    from inotify_simple import flags as F

    MASK = (F.MODIFY | F.CLOSE_WRITE | F.MOVED_FROM | F.MOVED_TO | F.CREATE | F.DELETE | F.DELETE_SELF
            | F.MOVE_SELF | F.ATTRIB)
MAX_WRITE_WAIT = 2.0  # seconds a file may stay open for writing before its changes are reported anyway
MAX_WATCHES = 100_000  # directories watched at most (inputs are bounded too)


class WatchedInputs(Protocol):
    """Which paths are inputs (`source.Inputs`, the rules of `expand_paths`)."""

    roots: list[str]

    def relevant(self, path: str) -> bool: ...

    def watched(self, directory: str) -> bool: ...


class Watcher:
    def __init__(self, inputs: WatchedInputs, on_change: Callable[[str, list[str] | None], None]):
        self.inputs, self.roots, self.on_change = inputs, inputs.roots, on_change
        self._whole = False  # a change in the batch names no single file: a directory, or lost events
        self.writing: dict[str, float] = {}  # relevant files open for writing -> since when
        self.modifications = 0  # relevant writes seen (IN_MODIFY): a reload reading across one discards its result
        self._dirs: dict[int, str] = {}
        self._pending: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inotify = INotify(nonblocking=True)
        self.fd = self._inotify.fileno()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for root in self.roots:
            self._add_tree(root)
        loop.add_reader(self.fd, self._read)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._loop is not None:
            self._loop.remove_reader(self.fd)
        self._inotify.close()

    def _add_tree(self, top: str) -> None:
        """Watch `top` and the directories under it that may hold inputs (none under `.git`)."""
        for d, subdirs, _ in os.walk(top, followlinks=False):
            subdirs[:] = [s for s in subdirs if self.inputs.watched(os.path.join(d, s))]
            if len(self._dirs) >= MAX_WATCHES:
                log.warning("more than %d directories under %s: the rest are not watched", MAX_WATCHES, top)
                return
            try:
                wd = self._inotify.add_watch(d, MASK | F.ONLYDIR)
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.ENOTDIR):  # vanished meanwhile: its parent reports that
                    log.warning("cannot watch %s: %s", d, e.strerror)
                continue
            self._dirs[wd] = d

    def catch_up(self) -> None:
        """Take the events that arrived while the loop was busy (a compile run on it), as the loop would."""
        self._read()

    def _read(self) -> None:
        try:
            events = self._inotify.read(timeout=0)
        except BlockingIOError:
            return
        trace.mark("watch", events=len(events))
        now = time.monotonic()
        for wd, mask, _cookie, name in events:
            if mask & F.Q_OVERFLOW:
                self._pending.append("event queue overflow")
                self._whole = True
                continue
            if mask & F.IGNORED:
                self._dirs.pop(wd, None)
                continue
            base = self._dirs.get(wd)
            if base is None:
                continue
            path = os.path.join(base, name) if name else base
            if mask & F.ISDIR:
                if not self.inputs.watched(path):
                    continue  # a hidden directory (.git): nothing in it is an input
                if mask & (F.CREATE | F.MOVED_TO):
                    self._add_tree(path)
                if mask & (F.CREATE | F.MOVED_TO | F.MOVED_FROM | F.DELETE | F.DELETE_SELF | F.MOVE_SELF):
                    self._pending.append(path)
                    self._whole = True
                continue
            if mask & (F.DELETE_SELF | F.MOVE_SELF):  # a watched directory itself went
                self._pending.append(path)
                self._whole = True
                continue
            if not self.inputs.relevant(path):
                continue
            if mask & (F.MODIFY | F.CREATE):
                self.writing.setdefault(path, now)
                if mask & F.MODIFY:
                    self.modifications += 1
            if mask & (F.CLOSE_WRITE | F.MOVED_TO | F.MOVED_FROM | F.DELETE):
                self.writing.pop(path, None)
                self._pending.append(path)
            elif mask & F.ATTRIB and path not in self.writing:
                self._pending.append(path)  # a chmod, or a hard link made or removed
        self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        now = time.monotonic()
        stuck = [p for p, since in self.writing.items() if now - since > MAX_WRITE_WAIT]
        for p in stuck:
            log.warning("%s has been open for writing for %.0f s; reading it as it is", p, MAX_WRITE_WAIT)
            self.writing.pop(p)
        if self.writing:  # wait for the writers to close: check again soon
            if self._timer is None:
                self._timer = self._loop.call_later(0.05, self._retry)
            return
        changes, self._pending = self._pending, []
        whole, self._whole = self._whole, False
        self.on_change(f"{len(changes)} file change(s)", None if whole else sorted(set(changes)))

    def _retry(self) -> None:
        self._timer = None
        self._flush()
