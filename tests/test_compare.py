"""`meshforge compare` against two versions of a real service behind a real Envoy (meshforge's static sidecar):
a field renamed, a type changed, a new optional field, a status that turns 500, a slower version, and an id and
a timestamp that change on every call. Every real difference is found and classified, the volatile fields are
noise and never differences, the exit codes follow --fail-on, and every output format is what it says."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from meshforge.compare import Answer, differences
from meshforge.envoyproc import free_port

from .compare_harness import sidecar

CASES = """\
- {name: user, path: /user}
- {name: same, path: /same, headers: {accept: application/json}}
- {name: health, path: /health}
- {name: orders, path: /orders}
- {name: create, method: POST, path: /echo, body: {"qty": 2}}
"""


@pytest.fixture(scope="module")
def port():
    with sidecar() as p:
        yield p


def run(cli, tmp_path, port, *args, cases=CASES):
    f = tmp_path / "cases.yaml"
    f.write_text(cases)
    return cli("compare", "--via", f"http://127.0.0.1:{port}", "--host", "api", "--routing-key", "pr-1",
               "--cases", str(f), *args)


def test_every_real_difference_found_and_classified_and_noise_is_not_one(cli, tmp_path, port):
    r = run(cli, tmp_path, port, "--output", "json", "--repeat", "3")
    assert r.exit_code == 1, r.output  # breaking differences, --fail-on breaking
    report = json.loads(r.stdout)
    by = {c["name"]: c for c in report["cases"]}
    got = {(d["path"], d["kind"], d["level"]) for d in by["user"]["differences"]}
    assert got == {("$.user.name", "removed", "breaking"), ("$.user.fullName", "added", "added"),
                   ("$.user.age", "type", "breaking"), ("$.user.tier", "added", "added")}, got
    assert {"$.id", "$.ts"} <= set(by["user"]["noise"]) and by["same"]["differences"] == []
    assert {"$.id", "$.ts"} <= set(by["same"]["noise"]) and by["health"] == {**by["health"], "differences": []}
    orders = {(d["path"], d["kind"], d["level"]) for d in by["orders"]["differences"]}
    assert ("status", "status", "breaking") in orders, orders
    create = by["create"]["differences"]
    assert [(d["path"], d["kind"], d["level"], d["baseline"], d["sandbox"]) for d in create] == \
        [("$.total", "value", "changed", 20, 22)]
    # v2 is 30 ms slower: the sandbox's latency says so, and the ratio shows it
    lat = report["summary"]["latency"]
    assert lat["sandbox"]["p50"] - lat["baseline"]["p50"] > 20 and lat["ratio"]["p50"] > 1.5, lat
    assert ("$.orders", "removed", "breaking") in orders and ("$.error", "added", "added") in orders
    assert report["summary"]["differences"]["breaking"] == 4 and report["summary"]["failing"] == 2


def test_fail_on_levels_and_exit_codes(cli, tmp_path, port):
    only_changed = "- {name: create, method: POST, path: /echo, body: {\"qty\": 2}}\n- {name: same, path: /same}\n"
    assert run(cli, tmp_path, port, cases=only_changed).exit_code == 0  # changed < breaking
    assert run(cli, tmp_path, port, "--fail-on", "changed", cases=only_changed).exit_code == 1
    assert run(cli, tmp_path, port, "--fail-on", "added", cases="- {name: same, path: /same}\n").exit_code == 0
    bad = run(cli, tmp_path, port, cases="- {name: x, path: no-slash}\n")
    assert bad.exit_code == 2 and "must start with /" in bad.stderr and "Traceback" not in bad.output
    dup = run(cli, tmp_path, port, cases="- {name: x, path: /a}\n- {name: x, path: /b}\n")
    assert dup.exit_code == 2 and "two cases are named 'x'" in dup.stderr
    (tmp_path / "cases.yaml").write_text(CASES)
    down = cli("compare", "--via", f"http://127.0.0.1:{free_port()}", "--routing-key", "pr-1",
               "--cases", str(tmp_path / "cases.yaml"))
    assert down.exit_code == 2 and "unreachable" in down.stderr
    assert cli("compare", "--via", "ftp://x", "--routing-key", "pr-1", "--cases", "f").exit_code == 2
    assert cli("compare", "--via", "http://x:1", "--routing-key", "Bad Key", "--cases", "f").exit_code == 2


def test_markdown_junit_and_text_reports(cli, tmp_path, port):
    md = run(cli, tmp_path, port, "--output", "markdown").stdout
    assert md.startswith("### meshforge compare: `pr-1` against the baseline")
    assert "| user | breaking | removed | `$.user.name` |" in md and "<details><summary>Noise" in md
    junit = ET.fromstring(run(cli, tmp_path, port, "--output", "junit").stdout)
    assert junit.get("tests") == "5" and junit.get("failures") == "2"
    failed = {c.get("name") for c in junit.iter("testcase") if c.find("failure") is not None}
    assert failed == {"user", "orders"}
    text = run(cli, tmp_path, port).stdout
    assert "BREAKING  user" in text and "same      same" in text and "noise" in text


def test_har_files_replay_without_credentials(cli, tmp_path, port):
    har = {"log": {"entries": [
        {"request": {"method": "GET", "url": "http://api/user", "headers": [
            {"name": "Authorization", "value": "Bearer secret"}, {"name": "Cookie", "value": "s=1"},
            {"name": ":authority", "value": "api"}, {"name": "Accept", "value": "application/json"}]}},
        {"request": {"method": "POST", "url": "http://api/echo?x=1", "postData": {"text": "{\"qty\": 1}"},
                     "headers": [{"name": "Content-Type", "value": "application/json"}]}}]}}
    from meshforge.compare import load_cases

    f = tmp_path / "rec.har"
    f.write_text(json.dumps(har))
    cases = load_cases(str(f))
    assert [c.path for c in cases] == ["/user", "/echo?x=1"] and cases[1].body == b'{"qty": 1}'
    assert dict(cases[0].headers) == {"accept": "application/json"}  # no credentials, no pseudo-headers
    assert ("authorization", "Bearer secret") in load_cases(str(f), keep_credentials=True)[0].headers
    r = cli("compare", "--via", f"http://127.0.0.1:{port}", "--host", "api", "--routing-key", "pr-1",
            "--cases", str(f), "--output", "json")
    assert r.exit_code == 1 and len(json.loads(r.stdout)["cases"]) == 2


def test_structural_differences_unit():
    def a(body, status=200, ctype="application/json"):
        return Answer(status, {"content-type": ctype}, json.dumps(body).encode(), 1.0)

    d = differences(a({"x": [1, 2], "y": None}), a({"x": [1, 2, 3], "y": 0}))
    assert {(x.path, x.kind, x.level) for x in d} == {("$.x.length", "value", "changed"), ("$.y", "type", "breaking")}
    assert [x.level for x in differences(a({}, 200), a({}, 201))] == ["changed"]  # same class
    assert [(x.kind, x.level) for x in differences(a({}), a({}, ctype="text/html"))] == [("header", "changed")]


def test_the_readme_command_prints_the_sample(cli, tmp_path, port):
    """The README's compare command (its --via port and cases file those of this test's sidecar), and its
    sample report line for line, the latency figures apart."""
    import re
    import shlex

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = re.search(r"^## What changed: `meshforge compare`.*?```sh\n(.*?)```\n.*?```\n(.*?)```", readme,
                        re.M | re.S)
    words = shlex.split(section[1].strip())
    assert words[:2] == ["meshforge", "compare"]
    args = [f"http://127.0.0.1:{port}" if w.startswith("http://") else str(tmp_path / w) if w == "cases.yaml"
            else w for w in words[2:]]
    (tmp_path / "cases.yaml").write_text("- {name: user, path: /user}\n- {name: orders, path: /orders}\n"
                                         "- {name: create, method: POST, path: /echo, body: {\"qty\": 2}}\n")
    r = cli("compare", *args)
    assert r.exit_code == 1
    latency = re.compile(r"latency p50 .*$")
    want = [latency.sub("", line) for line in section[2].splitlines()]
    assert [latency.sub("", line) for line in r.stdout.splitlines()] == want


def test_cases_from_the_requests_the_proxies_logged(cli, tmp_path):
    """--from-requests: the key-less GETs a real sidecar logged to serve (requests with a trace context, as
    OpenTelemetry-instrumented callers send them) become the cases, by method and path, once each; the logged
    POST is not replayed; keyed requests are not cases."""
    import http.client
    from contextlib import ExitStack

    from meshforge.sampleapp import SampleApp

    from .serve_harness import Server, Sidecar, wait_until

    d = tmp_path / "specs"
    d.mkdir()
    with ExitStack() as stack:
        v1, v2 = stack.enter_context(SampleApp("api-v1")), stack.enter_context(SampleApp("api-v2"))
        (d / "specs.yaml").write_text(f"""\
apiVersion: meshforge.dev/v1alpha1
kind: Baseline
metadata: {{name: staging, namespace: shop}}
spec:
  services:
  - {{name: web, ports: [{{name: http, port: 80}}], dependsOn: [api]}}
  - {{name: api, ports: [{{name: http, port: 80}}], endpoints: [{{address: 127.0.0.1, port: {v1.port}}}]}}
---
apiVersion: meshforge.dev/v1alpha1
kind: Sandbox
metadata: {{name: pr-1, namespace: shop}}
spec:
  forks: [{{service: api, to: {{endpoints: [{{address: 127.0.0.1, port: {v2.port}}}]}}}}]
""")
        server = stack.enter_context(Server([d]))
        port = stack.enter_context(Sidecar("web.shop", server)).outbound

        def call(method, path, headers=None):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request(method, path, headers={"Host": "api", **(headers or {})})
            status = c.getresponse().status
            c.close()
            return status

        wait_until(lambda: call("GET", "/") == 200, 20, what="sidecar configured")
        trace = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}  # what proxies log
        for method, path in [("GET", "/a"), ("GET", "/a"), ("GET", "/b?q=1"), ("POST", "/order")]:
            call(method, path, trace)
        call("GET", "/keyed", {"x-meshforge-routing-key": "pr-1"})

        def logged():
            rows = json.loads(server.get("/api/requests?limit=1000")[1])["requests"]
            return {(r["method"], r["path"]) for r in rows}
        wait_until(lambda: {("GET", "/b?q=1"), ("POST", "/order"), ("GET", "/keyed")} <= logged(), 10,
                   what="the requests logged")
        r = cli("compare", "--via", f"http://127.0.0.1:{port}", "--host", "api", "--routing-key", "pr-1",
                "--from-requests", f"127.0.0.1:{server.admin_port}", "--service", "api.shop", "--output", "json",
                "--fail-on", "changed")
        assert r.exit_code == 1, r.output  # api-v1 -> api-v2: $.name changed
        names = {c["name"] for c in json.loads(r.stdout)["cases"]}
        assert {"GET /a", "GET /b?q=1"} <= names and "POST /order" not in names and "GET /keyed" not in names
        assert all(any(d["path"] == "$.name" for d in c["differences"]) for c in json.loads(r.stdout)["cases"])
        assert cli("compare", "--via", f"http://127.0.0.1:{port}", "--routing-key", "pr-1", "--from-requests",
                   f"127.0.0.1:{server.admin_port}", "--service", "nobody.shop").exit_code == 2
        assert cli("compare", "--via", "http://x:1", "--routing-key", "pr-1").exit_code == 2  # neither source


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_ANY = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                    max_leaves=6)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entry=_ANY, request=_ANY, headers=_ANY, case=_ANY)
def test_malformed_cases_and_har_files_are_usage_errors_never_tracebacks(cli, tmp_path, entry, request, headers,
                                                                         case):
    from meshforge.compare import CasesError, load_cases

    for i, data in enumerate([{"log": {"entries": [entry, {"request": request},
                                                    {"request": {"url": "http://a/", "headers": headers}}]}},
                              [case], {"cases": case}]):
        f = tmp_path / f"c{i}.json"
        f.write_text(json.dumps(data))
        try:
            load_cases(str(f))
        except CasesError:
            pass
