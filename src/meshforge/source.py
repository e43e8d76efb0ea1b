"""Source loading: paths → YAML documents as plain data, with a JSON pointer → (line, column) index.

Input: files and directories. Output: `Document`s (plain dicts/lists/scalars, never objects) and
diagnostics. Safe by construction: only the YAML core tags are accepted, duplicate keys are errors,
and file size, document count and alias expansion are bounded so hostile input cannot exhaust memory.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .diagnostics import Diagnostics, Span

try:  # libyaml's parser is ~10x faster; resolution still uses PyYAML's safe resolver.
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - pure-Python fallback
    _Loader = yaml.SafeLoader

MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_DOCUMENTS_PER_FILE = 20_000
# Node counts include alias expansions ("billion laughs"); they are measured on the composed graph,
# which shares aliased nodes, before anything is expanded, so a bomb is refused in milliseconds.
MAX_NODES_PER_DOCUMENT = 200_000
MAX_NODES_PER_FILE = 1_000_000
MAX_NODES_TOTAL = 10_000_000  # all inputs of one run together
MAX_DEPTH = 100  # nesting of lists and maps; real manifests stay under 30
MAX_FILES = 50_000
MAX_TOTAL_BYTES = 256 * 1024 * 1024  # all inputs of one run together

_SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"

_constructor = yaml.constructor.SafeConstructor()


@dataclass
class Document:
    """One YAML document: its data, where it came from, and where each node is."""

    file: str
    index: int  # position of the document in its file, from 0
    data: object
    nodes: int = 0  # nodes after alias expansion
    positions: dict[str, tuple[int, int]] = field(default_factory=dict)  # pointer -> value (line, col)
    key_positions: dict[str, tuple[int, int]] = field(default_factory=dict)  # pointer -> key (line, col)
    _prefix: str = ""  # for a child document: its pointer inside the parent
    _parent: Document | None = None

    def span(self, pointer: str = "", *, key: bool = False) -> Span:
        """The span of `pointer`, or of its nearest ancestor that exists."""
        if self._parent is not None:
            return self._parent.span(self._prefix + pointer, key=key)
        p = pointer
        while True:
            pos = (self.key_positions.get(p) if key else None) or self.positions.get(p)
            if pos is not None:
                return Span(self.file, pos[0], pos[1], pointer)
            if not p:
                return Span(self.file, 1, 1, pointer)
            p = p.rsplit("/", 1)[0]

    def child(self, pointer: str) -> Document:
        """The object at `pointer` as a document of its own (an item of a `kind: List`); its spans still
        point into this file, with the full pointer."""
        node: object = self.data
        for token in pointer.strip("/").split("/"):
            node = node[int(token)] if isinstance(node, list) else node[token.replace("~1", "/").replace("~0", "~")]
        doc = Document(self.file, self.index, node, 0)
        doc._prefix = self._prefix + pointer
        doc._parent = self._parent or self
        return doc

    @property
    def kind(self) -> str | None:
        return self.data.get("kind") if isinstance(self.data, dict) else None

    @property
    def api_version(self) -> str | None:
        return self.data.get("apiVersion") if isinstance(self.data, dict) else None


def escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


class _Rejected(Exception):
    def __init__(self, code: str, message: str, mark, pointer: str, hint: str | None = None):
        self.code, self.message, self.mark, self.pointer, self.hint = code, message, mark, pointer, hint


def _children(node) -> list:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _measure_tree(root) -> tuple[int, int]:
    """`measure` for a document without aliases (a tree: nothing is shared), level by level."""
    count = depth = 0
    level = [root]
    while level:
        count += len(level)
        depth += 1
        below: list = []
        for node in level:
            if isinstance(node, yaml.SequenceNode):
                below.extend(node.value)
            elif isinstance(node, yaml.MappingNode):
                for pair in node.value:
                    below.extend(pair)
        level = below
    return count, depth


def measure(root) -> tuple[int, int]:
    """(nodes after alias expansion, depth) of a composed document, in time linear in the composed
    graph (aliased nodes are shared there, and counted once per use here). Iterative: no recursion
    limit to hit. A node reached again while it is still being measured is a recursive alias."""
    done: dict[int, tuple[int, int]] = {}
    open_: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, finished = stack.pop()
        k = id(node)
        if finished:
            kids = [done[id(c)] for c in _children(node)]
            done[k] = (1 + sum(n for n, _ in kids), 1 + max((d for _, d in kids), default=0))
            open_.discard(k)
            continue
        if k in done:
            continue
        if k in open_:
            raise _Rejected("MF006", "recursive YAML alias (a node that contains itself)", node.start_mark, "",
                            "spec files are trees: write the document without self-referencing anchors")
        open_.add(k)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in done)
    return done[id(root)]


def _build(node, pointer: str, doc: Document):
    doc.positions[pointer] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.ScalarNode):
        if node.tag == _TIMESTAMP:
            return node.value  # dates stay strings; the spec layer parses them with a precise error
        if node.tag not in _SCALAR_TAGS:
            raise _Rejected("MF006", f"YAML tag {node.tag!r} is not allowed", node.start_mark, pointer,
                            "spec files are plain data: strings, numbers, booleans, null, lists and maps")
        return _constructor.construct_object(node)
    if isinstance(node, yaml.SequenceNode):
        if node.tag != _SEQ:
            raise _Rejected("MF006", f"YAML tag {node.tag!r} is not allowed", node.start_mark, pointer)
        return [_build(child, f"{pointer}/{i}", doc) for i, child in enumerate(node.value)]
    if node.tag != _MAP:
        raise _Rejected("MF006", f"YAML tag {node.tag!r} is not allowed", node.start_mark, pointer)
    out: dict = {}
    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            raise _Rejected("MF006", "YAML merge keys (<<) are not supported", key_node.start_mark, pointer,
                            "write the fields out; generated specs stay easier to review")
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _SCALAR_TAGS:
            raise _Rejected("MF006", "mapping keys must be plain scalars", key_node.start_mark, pointer)
        key = _constructor.construct_object(key_node)
        key = key if isinstance(key, str) else ("null" if key is None else str(key).lower() if isinstance(key, bool) else str(key))
        child = f"{pointer}/{escape(key)}"
        if key in out:
            first = doc.key_positions[child]
            raise _Rejected("MF002", f"duplicate key {key!r} (first defined at line {first[0]})",
                            key_node.start_mark, child, "remove one of the two; YAML would silently keep only the last")
        doc.key_positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        out[key] = _build(value_node, child, doc)
    return out


def parse_text(text: str, filename: str, diags: Diagnostics) -> list[Document]:
    """Parse one file's text into documents; problems become diagnostics, never exceptions.

    Every document is composed and measured before any is expanded: a file over the node budget
    is refused whole, in time proportional to its size.
    """
    composed = []
    loader = _Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if len(composed) >= MAX_DOCUMENTS_PER_FILE:
                diags.error("MF003", f"more than {MAX_DOCUMENTS_PER_FILE} documents in one file",
                            Span(filename, node.start_mark.line + 1, node.start_mark.column + 1), "split the file")
                break
            composed.append(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        msg = " ".join(x for x in (e.context, e.problem) if x)
        diags.error("MF001", msg or "invalid YAML", Span(filename, line, col),
                    "check indentation and quoting around this position")
        return []
    except yaml.YAMLError as e:
        diags.error("MF001", str(e).splitlines()[0], Span(filename))
        return []
    except RecursionError:
        diags.error("MF003", "nesting too deep to read", Span(filename), f"at most {MAX_DEPTH} levels")
        return []
    finally:
        loader.dispose()

    measured = []
    total = 0
    aliases = "*" in text  # an alias is written *name: without one, every document is a tree
    for i, node in enumerate(composed):
        if node is None:
            continue
        here = Span(filename, node.start_mark.line + 1, node.start_mark.column + 1)
        try:
            nodes, depth = measure(node) if aliases else _measure_tree(node)
        except _Rejected as r:
            diags.error(r.code, r.message, Span(filename, r.mark.line + 1, r.mark.column + 1), r.hint)
            continue
        if depth > MAX_DEPTH:
            diags.error("MF003", f"document nests {depth} levels deep; the limit is {MAX_DEPTH}", here,
                        "spec files and Kubernetes manifests are shallow: check for runaway [ or {")
            continue
        if nodes > MAX_NODES_PER_DOCUMENT:
            diags.error("MF003", f"document expands to {nodes} nodes; the limit is {MAX_NODES_PER_DOCUMENT}", here,
                        "YAML aliases expanded beyond the limit; write the document without anchors")
            continue
        total += nodes
        measured.append((i, node, nodes))
    if total > MAX_NODES_PER_FILE:
        diags.error("MF003", f"file expands to {total} nodes; the limit is {MAX_NODES_PER_FILE}", Span(filename),
                    "YAML aliases expanded beyond the limit, or the file is too large: split it")
        return []

    docs: list[Document] = []
    for i, node, nodes in measured:
        doc = Document(filename, i, None, nodes)
        try:
            doc.data = _build(node, "", doc)
        except _Rejected as r:
            diags.error(r.code, r.message, Span(filename, r.mark.line + 1, r.mark.column + 1, r.pointer), r.hint)
            continue
        if doc.data is not None:
            docs.append(doc)
    return docs


SPEC_SUFFIXES = (".yaml", ".yml")  # what is read under a named directory


def _hidden(name: str) -> bool:
    return name.startswith(".")


class Inputs:
    """Which paths are inputs of `expand_paths(paths)`, for a file watcher: it names paths resolved (a
    symlinked spec directory is followed to its target), and must know both which files to report and
    which directories to watch. One set of rules with `expand_paths`: files named directly; `*.yaml` and
    `*.yml` under named directories, except under hidden directories (`.git`, `..data` of a ConfigMap
    volume's previous revisions)."""

    def __init__(self, paths: list[str]):
        self.files: dict[str, str] = {}  # resolved path of a file named directly -> as named
        self.dirs: list[tuple[str, str]] = []  # (a named directory as named, resolved with a trailing /)
        for p in paths:
            real = os.path.realpath(p)
            if os.path.isdir(real):
                self.dirs.append((os.fspath(Path(p)), real.rstrip("/") + "/"))
            else:
                self.files[real] = p
        # the directories to watch: the named ones, and those holding named files
        self.roots = sorted({d.rstrip("/") or "/" for _, d in self.dirs} | {os.path.dirname(f) for f in self.files})
        self._roots = frozenset(self.roots)

    def _under(self, path: str) -> tuple[str, str] | None:
        """(the named directory as named, path relative to it) for a path under a named directory."""
        for given, real in self.dirs:
            if path.startswith(real):
                return given, path[len(real):]
        return None

    def name(self, path: str) -> str | None:
        """The name `expand_paths` gives the file at (resolved) `path`, or None when it is no input."""
        if path in self.files:
            return self.files[path]
        hit = self._under(path)
        if hit is None:
            return None
        given, rel = hit
        parts = rel.split("/")
        if not rel.endswith(SPEC_SUFFIXES) or any(_hidden(x) or not x for x in parts[:-1]):
            return None
        return os.path.join(given, rel)

    def watched(self, directory: str) -> bool:
        """Whether a directory under a root may hold inputs (one under a hidden directory cannot)."""
        if directory.rstrip("/") in self._roots:
            return True
        hit = self._under(directory.rstrip("/") + "/")
        return hit is not None and not any(_hidden(x) for x in hit[1].rstrip("/").split("/") if x)

    def relevant(self, path: str) -> bool:
        """Whether a change at `path` (a file, a directory, or something gone) may change the inputs."""
        if self.name(path) is not None:
            return True
        if path in self.files or self._under(path) is None:
            return False
        return not os.path.isfile(path) and self.watched(path)  # a directory, or gone: it may take inputs away


def expand_paths(paths: list[str], diags: Diagnostics) -> list[str]:
    """Files named directly, and `*.yaml`/`*.yml` under directories (recursive, sorted). Strings, not Paths:
    at 10,000 files, building Paths costs more than walking the tree."""
    files: list[str] = []
    for raw in paths:
        p = Path(raw)
        try:
            mode = p.stat().st_mode
        except OSError:
            mode = None
        if mode is not None and not stat.S_ISDIR(mode) and not stat.S_ISREG(mode):
            diags.error("MF004", f"{raw} is not a regular file or directory", Span(raw),
                        "name spec files or the directories that hold them")
            continue
        if p.is_dir():
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not _hidden(d))
                files.extend(os.path.join(root, n) for n in names if n.endswith(SPEC_SUFFIXES))
        elif p.is_file():
            files.append(str(p))
        else:
            diags.error("MF004", f"no such file or directory: {raw}", Span(raw), "check the path")
    unique = sorted(set(files))
    if len(unique) > MAX_FILES:
        diags.error("MF003", f"{len(unique)} input files; the limit is {MAX_FILES}", Span(paths[0] if paths else ""))
        return []
    return unique


def _read_at_most(fd: int, limit: int, size: int) -> bytes:
    """Up to `limit` bytes of `fd`, in reads the size the file says it has (one, for a file not being
    written), then larger ones should it grow. Not a buffered read of `limit` bytes: that allocates the
    whole limit (8 MB) for every file, 16 us against 2.5 us for a sandbox file, more with a cold CPU."""
    chunks = []
    want = min(size + 1, limit)
    while limit > 0:
        chunk = os.read(fd, want)
        if not chunk:
            break
        chunks.append(chunk)
        limit -= len(chunk)
        want = min(max(want, 1 << 16), limit)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def read_file(path: str | Path, diags: Diagnostics) -> str | None:
    """A regular file's text. Opened without blocking and checked before reading, so a FIFO, a socket
    or a device among the inputs is a diagnostic rather than a hang; never more than the limit is read."""
    name = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        diags.error("MF004", f"cannot read: {e.strerror or e}", Span(name))
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            diags.error("MF004", "not a regular file (a FIFO, socket or device)", Span(name),
                        "name spec files or the directories that hold them")
            return None
        if st.st_size > MAX_FILE_BYTES:
            diags.error("MF003", f"file is {st.st_size} bytes; the limit is {MAX_FILE_BYTES}", Span(name),
                        "split large inputs into several files")
            return None
        raw = _read_at_most(fd, MAX_FILE_BYTES + 1, st.st_size)
    except OSError as e:
        diags.error("MF004", f"cannot read: {e.strerror or e}", Span(name))
        return None
    finally:
        os.close(fd)
    if len(raw) > MAX_FILE_BYTES:
        diags.error("MF003", f"file is larger than {MAX_FILE_BYTES} bytes", Span(name), "split large inputs")
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        diags.error("MF004", f"not UTF-8 text (byte {e.start})", Span(name), "spec files are UTF-8 YAML")
        return None


class RunBudget:
    """What all inputs of one run may add up to: bytes read and nodes after alias expansion."""

    def __init__(self) -> None:
        self.bytes = 0
        self.nodes = 0

    def take(self, size: int, nodes: int, filename: str, diags: Diagnostics) -> bool:
        """Count one file in; False (with the error) once the run is over budget."""
        self.bytes += size
        self.nodes += nodes
        if self.bytes > MAX_TOTAL_BYTES:
            diags.error("MF003", f"inputs exceed {MAX_TOTAL_BYTES} bytes in all", Span(filename),
                        "point meshforge at the spec directories only")
            return False
        if self.nodes > MAX_NODES_TOTAL:
            diags.error("MF003", f"inputs expand to more than {MAX_NODES_TOTAL} YAML nodes in all", Span(filename),
                        "point meshforge at the spec directories only, and write specs without YAML anchors")
            return False
        return True


def load_paths(paths: list[str], diags: Diagnostics) -> list[Document]:
    docs: list[Document] = []
    budget = RunBudget()
    for f in expand_paths(paths, diags):
        text = read_file(f, diags)
        if text is None:
            continue
        parsed = parse_text(text, str(f), diags)
        if not budget.take(len(text), sum(d.nodes for d in parsed), str(f), diags):
            break
        docs.extend(parsed)
    return docs
