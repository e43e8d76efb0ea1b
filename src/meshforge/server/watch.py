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
Why not watchfiles: it reports only "modified", not "closed after writing", so it can tell a complete
file from a half-written one only by waiting for a quiet period (10 ms at least, on every change).
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
import struct
import sys
import time
from typing import Callable

log = logging.getLogger("meshforge.watch")

IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x2, 0x4, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF, IN_Q_OVERFLOW, IN_IGNORED, IN_ISDIR = 0x400, 0x800, 0x4000, 0x8000, 0x40000000
IN_ONLYDIR, IN_NONBLOCK, IN_CLOEXEC = 0x01000000, 0o4000, 0o2000000
MASK = (IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF
        | IN_MOVE_SELF | IN_ATTRIB)
EVENT = struct.Struct("iIII")
MAX_WRITE_WAIT = 2.0  # seconds a file may stay open for writing before its changes are reported anyway
MAX_WATCHES = 100_000  # directories watched at most (inputs are bounded too)

AVAILABLE = sys.platform.startswith("linux")


class Watcher:
    def __init__(self, roots: list[str], relevant: Callable[[str], bool],
                 on_change: Callable[[str, list[str] | None], None]):
        self.roots, self.relevant, self.on_change = roots, relevant, on_change
        self._whole = False  # a change in the batch names no single file: a directory, or lost events
        self.writing: dict[str, float] = {}  # relevant files open for writing -> since when
        self.modifications = 0  # relevant writes seen (IN_MODIFY): a reload reading across one discards its result
        self._dirs: dict[int, str] = {}
        self._pending: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1: " + os.strerror(ctypes.get_errno()))

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
        os.close(self.fd)

    def _add_tree(self, top: str) -> None:
        for d, subdirs, _ in os.walk(top, followlinks=False):
            if len(self._dirs) >= MAX_WATCHES:
                log.warning("more than %d directories under %s: the rest are not watched", MAX_WATCHES, top)
                return
            wd = self._libc.inotify_add_watch(self.fd, os.fsencode(d), MASK | IN_ONLYDIR)
            if wd < 0:
                err = ctypes.get_errno()
                if err not in (errno.ENOENT, errno.ENOTDIR):  # vanished meanwhile: its parent reports that
                    log.warning("cannot watch %s: %s", d, os.strerror(err))
                continue
            self._dirs[wd] = d

    def _read(self) -> None:
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return
        now = time.monotonic()
        for wd, mask, _cookie, length, name in self._events(data):
            if mask & IN_Q_OVERFLOW:
                self._pending.append("event queue overflow")
                self._whole = True
                continue
            if mask & IN_IGNORED:
                self._dirs.pop(wd, None)
                continue
            base = self._dirs.get(wd)
            if base is None:
                continue
            path = os.path.join(base, name) if name else base
            if mask & IN_ISDIR:
                if mask & (IN_CREATE | IN_MOVED_TO):
                    self._add_tree(path)
                if mask & (IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF):
                    self._pending.append(path)
                    self._whole = True
                continue
            if mask & (IN_DELETE_SELF | IN_MOVE_SELF):  # a watched directory itself went
                self._pending.append(path)
                self._whole = True
                continue
            if not self.relevant(path):
                continue
            if mask & (IN_MODIFY | IN_CREATE):
                self.writing.setdefault(path, now)
                if mask & IN_MODIFY:
                    self.modifications += 1
            if mask & (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE):
                self.writing.pop(path, None)
                self._pending.append(path)
            elif mask & IN_ATTRIB and path not in self.writing:
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

    @staticmethod
    def _events(data: bytes):
        i = 0
        while i + EVENT.size <= len(data):
            wd, mask, cookie, length = EVENT.unpack_from(data, i)
            raw = data[i + EVENT.size:i + EVENT.size + length]
            yield wd, mask, cookie, length, os.fsdecode(raw.split(b"\0", 1)[0])
            i += EVENT.size + length
