"""`meshforge compare`: the same requests against the baseline and a sandbox, and what changed between them.

Input: cases (a YAML list of `{name, method, path, headers, body}`, or a HAR file as browsers and proxies export
it), where to send them (the edge, or a sidecar's outbound listener with a Host) and the routing key. Each case
is sent `repeat` times as a round of two requests without the key and one with it (Diffy's scheme): what
differs between the two baseline answers, or between the sandbox answers of different rounds, is noise
(request ids, timestamps) and is reported as such; what differs between the sandbox and the baseline, and is
not noise, is a difference. Output: `Comparison` (text, JSON, Markdown for a pull-request comment, JUnit XML).

Differences, compared structurally: status (breaking when its class changes: 2xx to 5xx), the content type
(changed), JSON bodies field by field (removed and type changed: breaking; value changed, array length:
changed; new field: added), other bodies by their bytes (changed).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import math
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import yaml

LEVELS = ("added", "changed", "breaking")  # in rising order
CREDENTIALS = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key", "x-auth-token"})
HOP_BY_HOP = frozenset({"host", "content-length", "connection", "keep-alive", "transfer-encoding", "upgrade",
                        "te", "trailer", "proxy-connection", "accept-encoding"})
COMPARED_HEADERS = ("content-type",)
MAX_CASES = 10_000
MAX_BODY = 8 * 1024 * 1024  # bytes of one response kept


class CasesError(ValueError):
    """A cases file meshforge cannot use: says where and why."""


@dataclass(frozen=True)
class Case:
    name: str
    method: str = "GET"
    path: str = "/"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    ms: float


@dataclass(frozen=True)
class Difference:
    path: str
    kind: str  # removed | added | type | value | status | header
    level: str  # breaking | changed | added
    baseline: object
    sandbox: object

    def to_json(self) -> dict:
        return {"path": self.path, "kind": self.kind, "level": self.level, "baseline": self.baseline,
                "sandbox": self.sandbox}

    def sides(self) -> tuple[str, str]:
        """The two values as a reader sees them (a side without the field says so)."""
        return ("(absent)" if self.kind == "added" else _short(self.baseline),
                "(absent)" if self.kind == "removed" else _short(self.sandbox))

    def line(self) -> str:
        what = self.path if self.kind == self.path else f"{self.path} ({self.kind})"
        a, b = self.sides()
        return f"{self.level}: {what}: {a} -> {b}"


@dataclass
class CaseResult:
    case: Case
    differences: list[Difference] = field(default_factory=list)
    noise: list[str] = field(default_factory=list)
    baseline_ms: list[float] = field(default_factory=list)
    sandbox_ms: list[float] = field(default_factory=list)

    def worst(self) -> str | None:
        return max((d.level for d in self.differences), key=LEVELS.index, default=None)


# -- cases ---------------------------------------------------------------------------------------------------

def load_cases(path: str, keep_credentials: bool = False) -> list[Case]:
    """A YAML list of cases, or a HAR file (JSON with `log.entries`). Credentials (authorization, cookies) in a
    HAR are dropped unless `keep_credentials`: a recording is not a license to replay someone's session."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CasesError(f"{path}: cannot read: {e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        raise CasesError(f"{where}: not YAML or JSON: {getattr(e, 'problem', e)}") from None
    if isinstance(data, dict) and isinstance(data.get("log"), dict):
        cases = _har(path, data["log"].get("entries"), keep_credentials)
    elif isinstance(data, dict) and isinstance(data.get("cases"), list):
        cases = [_case(path, i, c) for i, c in enumerate(data["cases"])]
    elif isinstance(data, list):
        cases = [_case(path, i, c) for i, c in enumerate(data)]
    else:
        raise CasesError(f"{path}: expected a list of cases ({{name, method, path, headers, body}}) or a HAR file")
    if not cases:
        raise CasesError(f"{path}: no cases")
    if len(cases) > MAX_CASES:
        raise CasesError(f"{path}: {len(cases)} cases, more than {MAX_CASES}")
    names = [c.name for c in cases]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise CasesError(f"{path}: two cases are named {dup!r}: names must be unique (they name the report rows)")
    return cases


def _case(path: str, i: int, c: object) -> Case:
    at = f"{path}: case {i + 1}"
    if not isinstance(c, dict):
        raise CasesError(f"{at}: a case is a mapping {{name, method, path, headers, body}}")
    unknown = sorted(set(c) - {"name", "method", "path", "headers", "body"})
    if unknown:
        raise CasesError(f"{at}: unknown field {unknown[0]!r} (a case has name, method, path, headers, body)")
    method = str(c.get("method", "GET")).upper()
    if not method.isalpha() or len(method) > 16:
        raise CasesError(f"{at}: method {method!r} is not an HTTP method")
    p = str(c.get("path", "/"))
    if not p.startswith("/") or any(ch in p for ch in "\r\n ") or len(p) > 8192:
        raise CasesError(f"{at}: path {p!r} must start with / and hold no spaces or line breaks")
    headers = c.get("headers") or {}
    if not isinstance(headers, dict):
        raise CasesError(f"{at}: headers is a mapping of name to value")
    pairs = []
    for k, v in headers.items():
        if not str(k) or any(ch in str(k) + str(v) for ch in "\r\n\0") or ":" in str(k):
            raise CasesError(f"{at}: header {k!r} is not a valid header")
        pairs.append((str(k), str(v)))
    body = c.get("body")
    if body is not None and not isinstance(body, str):
        body = json.dumps(body)
    return Case(str(c.get("name") or f"{method} {p}"), method, p, tuple(pairs),
                body.encode() if body is not None else None)


def _har(path: str, entries: object, keep_credentials: bool) -> list[Case]:
    if not isinstance(entries, list):
        raise CasesError(f"{path}: a HAR file's log.entries is a list")
    out = []
    for i, e in enumerate(entries):
        req = e.get("request") if isinstance(e, dict) else None
        if not isinstance(req, dict) or "url" not in req:
            raise CasesError(f"{path}: log.entries[{i}] has no request.url")
        u = urllib.parse.urlsplit(str(req["url"]))
        target = (u.path or "/") + (f"?{u.query}" if u.query else "")
        raw = req.get("headers") or []
        if not isinstance(raw, list) or not all(isinstance(h, dict) for h in raw):
            raise CasesError(f"{path}: log.entries[{i}].request.headers is not a list of {{name, value}}")
        if not isinstance(req.get("postData") or {}, dict):
            raise CasesError(f"{path}: log.entries[{i}].request.postData is not an object")
        headers = {}
        for h in raw:
            name = str(h.get("name", "")).lower()
            if not name or name.startswith(":") or name in HOP_BY_HOP or \
                    (name in CREDENTIALS and not keep_credentials):
                continue
            headers[name] = str(h.get("value", ""))
        text = (req.get("postData") or {}).get("text")
        out.append(_case(path, i, {"name": f"{i + 1} {str(req.get('method', 'GET')).upper()} {target}"[:200],
                                   "method": req.get("method", "GET"), "path": target, "headers": headers,
                                   "body": text}))
    return out


def cases_from_requests(rows: list[dict], service: str, methods: frozenset[str], limit: int = 100) -> list[Case]:
    """Cases from the requests the proxies logged (serve's /api/requests; proxies log requests that carry a
    key or a trace context): the key-less ones that reached `service` (name.namespace), by method and path, once each, newest first. Only `methods` (GET and HEAD
    unless asked): replaying a logged POST could repeat its effect. No header is replayed (none is logged:
    no credentials either)."""
    seen: dict[tuple[str, str], None] = {}
    for r in sorted(rows, key=lambda r: r.get("time") or 0, reverse=True):
        if r.get("key") or r.get("service") != service or not r.get("method") or r["method"] not in methods:
            continue
        p = str(r.get("path") or "/")
        if p.startswith("/") and not any(ch in p for ch in "\r\n ") and len(seen) < limit:
            seen.setdefault((r["method"], p), None)
    return [Case(f"{m} {p}", m, p) for m, p in seen]


# -- sending -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entrypoint:
    """Where requests go: `via` (http://HOST:PORT, the edge or a sidecar's outbound listener), the Host they
    carry, and how the sandbox requests carry the key: in the header and the baggage member (a trusted caller,
    a sidecar), or as the edge's preview host `<key>.<preview_domain>`."""

    via: str
    host: str | None
    key: str
    header: str = "x-meshforge-routing-key"
    baggage_key: str = "meshforge-routing-key"
    preview_domain: str | None = None
    timeout: float = 10.0


def send(t: Entrypoint, case: Case, keyed: bool) -> Answer:
    u = urllib.parse.urlsplit(t.via)
    headers = dict(case.headers)
    host = t.host or u.netloc
    if keyed:
        if t.preview_domain:
            host = f"{t.key}.{t.preview_domain}"
        else:
            headers[t.header] = t.key
            member = f"{t.baggage_key}={t.key}"
            old = next((k for k in headers if k.lower() == "baggage"), None)
            headers["baggage" if old is None else old] = f"{headers[old]},{member}" if old else member
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=t.timeout)
    try:
        start = time.perf_counter()
        conn.putrequest(case.method, case.path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("host", host)
        for k, v in headers.items():
            conn.putheader(k, v)
        if case.body is not None:
            conn.putheader("content-length", str(len(case.body)))
        conn.endheaders(case.body)
        r = conn.getresponse()
        body = r.read(MAX_BODY + 1)[:MAX_BODY]
        ms = (time.perf_counter() - start) * 1000
        return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, body, ms)
    finally:
        conn.close()


# -- comparing -----------------------------------------------------------------------------------------------

_MISSING = object()


def _json(body: bytes) -> object:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _MISSING


def _type(v: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(v), "number" if isinstance(v, (int, float)) else type(v).__name__)


def _walk(a: object, b: object, path: str, out: list[Difference]) -> None:
    if _type(a) != _type(b):
        out.append(Difference(path, "type", "breaking", _type(a), _type(b)))
    elif isinstance(a, dict):
        for k in a:
            if k not in b:
                out.append(Difference(f"{path}.{k}", "removed", "breaking", a[k], None))
            else:
                _walk(a[k], b[k], f"{path}.{k}", out)
        for k in b:
            if k not in a:
                out.append(Difference(f"{path}.{k}", "added", "added", None, b[k]))
    elif isinstance(a, list):
        if len(a) != len(b):
            out.append(Difference(f"{path}.length", "value", "changed", len(a), len(b)))
        for i, (x, y) in enumerate(zip(a, b)):
            _walk(x, y, f"{path}[{i}]", out)
    elif a != b:
        out.append(Difference(path, "value", "changed", a, b))


def differences(base: Answer, other: Answer) -> list[Difference]:
    out: list[Difference] = []
    if base.status != other.status:
        level = "breaking" if base.status // 100 != other.status // 100 else "changed"
        out.append(Difference("status", "status", level, base.status, other.status))
    for h in COMPARED_HEADERS:
        if base.headers.get(h) != other.headers.get(h):
            out.append(Difference(f"header:{h}", "header", "changed", base.headers.get(h), other.headers.get(h)))
    a, b = _json(base.body), _json(other.body)
    if a is not _MISSING and b is not _MISSING:
        _walk(a, b, "$", out)
    elif base.body != other.body:
        out.append(Difference("$body", "value", "changed", _digest(base.body), _digest(other.body)))
    return out


def _digest(body: bytes) -> str:
    return f"{len(body)} bytes, sha256 {hashlib.sha256(body).hexdigest()[:16]}"


def _noisy(path: str, noise: set[str]) -> bool:
    """A path is noise when it, or a field it lies under, changed between runs of one side."""
    return any(path == n or path.startswith(n + ".") or path.startswith(n + "[") for n in noise)


def compare_case(t: Entrypoint, case: Case, repeat: int) -> CaseResult:
    res = CaseResult(case)
    base: list[Answer] = []
    sand: list[Answer] = []
    for _ in range(repeat):
        for keyed in (False, False, True):  # two baseline answers per sandbox answer: the noise floor
            a = send(t, case, keyed)
            (sand if keyed else base).append(a)
            (res.sandbox_ms if keyed else res.baseline_ms).append(a.ms)
    noise = {d.path for x, y in zip(base, base[1:]) for d in differences(x, y)}
    noise |= {d.path for x, y in zip(sand, sand[1:]) for d in differences(x, y)}
    found: dict[str, Difference] = {}
    for s in sand:
        for d in differences(base[0], s):
            if not _noisy(d.path, noise):
                found.setdefault(d.path, d)
    res.differences = sorted(found.values(), key=lambda d: d.path)
    res.noise = sorted(noise)
    return res


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(q / 100 * len(v)) - 1))]


@dataclass
class Comparison:
    key: str
    results: list[CaseResult]
    fail_on: str = "breaking"

    def failing(self) -> list[CaseResult]:
        limit = LEVELS.index(self.fail_on)
        return [r for r in self.results if r.worst() is not None and LEVELS.index(r.worst()) >= limit]

    def latency(self, results: list[CaseResult] | None = None) -> dict:
        rs = self.results if results is None else results
        b = [m for r in rs for m in r.baseline_ms]
        s = [m for r in rs for m in r.sandbox_ms]
        out = {"baseline": {"p50": round(percentile(b, 50), 2), "p99": round(percentile(b, 99), 2)},
               "sandbox": {"p50": round(percentile(s, 50), 2), "p99": round(percentile(s, 99), 2)}}
        out["ratio"] = {q: round(out["sandbox"][q] / out["baseline"][q], 2) if out["baseline"][q] else None
                        for q in ("p50", "p99")}
        return out

    def summary(self) -> dict:
        counts = {lvl: sum(1 for r in self.results for d in r.differences if d.level == lvl) for lvl in LEVELS}
        return {"routingKey": self.key, "cases": len(self.results), "failOn": self.fail_on,
                "failing": len(self.failing()), "differences": counts, "latency": self.latency()}

    def to_json(self) -> dict:
        return {"cases": [{"name": r.case.name, "differences": [d.to_json() for d in r.differences],
                           "noise": r.noise, "latency": self.latency([r])} for r in self.results],
                "summary": self.summary()}

    def text(self) -> str:
        lines = []
        for r in self.results:
            mark = {"breaking": "BREAKING", "changed": "changed", "added": "added"}.get(r.worst(), "same")
            lines.append(f"{mark:9} {r.case.name}")
            for d in r.differences:
                lines.append(f"          {d.line()}")
            if r.noise:
                lines.append(f"          noise (differs between runs of one side, not reported): {', '.join(r.noise)}")
        s = self.summary()
        lat = s["latency"]
        lines.append(f"{s['cases']} cases, routing key {self.key}: {s['differences']['breaking']} breaking, "
                     f"{s['differences']['changed']} changed, {s['differences']['added']} added; latency p50 "
                     f"{lat['baseline']['p50']} -> {lat['sandbox']['p50']} ms ({lat['ratio']['p50']}x), p99 "
                     f"{lat['baseline']['p99']} -> {lat['sandbox']['p99']} ms ({lat['ratio']['p99']}x)")
        return "\n".join(lines) + "\n"

    def markdown(self) -> str:
        s = self.summary()
        lat = s["latency"]
        out = [f"### meshforge compare: `{self.key}` against the baseline", "",
               f"**{s['differences']['breaking']} breaking**, {s['differences']['changed']} changed, "
               f"{s['differences']['added']} added in {s['cases']} cases (fails on {self.fail_on}). "
               f"Latency p50 {lat['baseline']['p50']} → {lat['sandbox']['p50']} ms ({lat['ratio']['p50']}×), "
               f"p99 {lat['baseline']['p99']} → {lat['sandbox']['p99']} ms ({lat['ratio']['p99']}×).", ""]
        rows = [(r, d) for r in self.results for d in r.differences]
        if rows:
            out += ["| case | level | what | path | baseline | sandbox |", "|---|---|---|---|---|---|"]
            out += [f"| {_md(r.case.name)} | {d.level} | {d.kind} | `{_md(d.path)}` | {_md(d.sides()[0])} | "
                    f"{_md(d.sides()[1])} |" for r, d in rows]
        else:
            out.append("No differences.")
        noisy = [r for r in self.results if r.noise]
        if noisy:
            out += ["", "<details><summary>Noise (differs between runs of one side; not reported)</summary>", ""]
            out += [f"- {_md(r.case.name)}: {', '.join(f'`{_md(n)}`' for n in r.noise)}" for r in noisy]
            out += ["", "</details>"]
        return "\n".join(out) + "\n"

    def junit(self) -> str:
        failing = {id(r) for r in self.failing()}
        out = ['<?xml version="1.0" encoding="UTF-8"?>',
               f'<testsuite name={quoteattr("meshforge compare " + self.key)} tests="{len(self.results)}" '
               f'failures="{len(failing)}">']
        for r in self.results:
            secs = sum(r.sandbox_ms) / 1000
            out.append(f'  <testcase classname="meshforge.compare" name={quoteattr(r.case.name)} time="{secs:.3f}">')
            if id(r) in failing:
                detail = "\n".join(d.line() for d in r.differences)
                out.append(f'    <failure message={quoteattr(f"{r.worst()} differences")}>{escape(detail)}</failure>')
            out.append("  </testcase>")
        out.append("</testsuite>")
        return "\n".join(out) + "\n"


def _short(v: object, limit: int = 60) -> str:
    text = json.dumps(v) if not isinstance(v, str) else v
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")
