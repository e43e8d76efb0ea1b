"""`meshforge connect` (issue 28, CONTRACT §5.4) with real Envoys: serve, the edge, sidecars, the tunnel node and two
laptops whose addresses no process of the "cluster" may connect to (the kernel's netfilter refuses it), so that
a request reaches a laptop only over the reverse tunnel its `meshforge connect` holds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.connect_harness import HOSTS, kernel_reason, shared_environment

pytestmark = pytest.mark.skipif(kernel_reason() is not None, reason=kernel_reason() or "")

BASELINE = ["web", "cart", "pay"]
ALICE = ["web", "cart@alice", "pay"]
BOB = ["web", "cart@bob", "pay"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with shared_environment(tmp_path_factory.mktemp("connect")) as e:
        yield e


def _attached(env, who, key, cert=None, timeout=30):
    deadline = time.monotonic() + timeout
    while "attached:" not in env.connect_log(who, key, cert):
        assert time.monotonic() < deadline, env.connect_log(who, key, cert) + env.logs()
        time.sleep(0.1)


def test_a_laptop_cannot_be_connected_to(env):
    """The premise: from the cluster's side, the laptop's address refuses connections."""
    r = env.ns.run(sys.executable, "-c", "import socket; socket.create_connection(('%s', 8080), timeout=3)"
                   % HOSTS["alice-laptop"])
    assert r.returncode != 0 and "Connection refused" in r.stderr, r.stderr


def test_keyed_requests_reach_each_laptop_and_everyone_else_the_baseline(env):
    """Before a laptop attaches, its key reaches the baseline; then the laptop at its hop (cart) and the baseline
    elsewhere; a second laptop with another key gets its own; a request without a key is untouched. (From outside,
    a key comes with its preview host: the edge drops one an outside caller sends itself.)"""
    assert env.edge(key="alice") == BASELINE
    alice = env.connect("alice", "alice")
    bob = env.connect("bob", "bob")
    _attached(env, "alice", "alice")
    _attached(env, "bob", "bob")
    env.wait_edge(ALICE, "alice")
    env.wait_edge(BOB, "bob")
    assert env.edge() == BASELINE
    assert alice.poll() is None and bob.poll() is None


def test_another_developers_certificate_cannot_take_a_key(env):
    """Bob's certificate (signed by the same CA) does not carry alice's fork's owner: his laptop never attaches
    as alice's, and alice's key keeps reaching alice's laptop."""
    if env.laptops.get("alice/alice/alice") is None or env.laptops["alice/alice/alice"].poll() is not None:
        env.connect("alice", "alice")
        _attached(env, "alice", "alice")
    thief = env.connect("bob", "alice", "bob")
    time.sleep(4)
    assert "attached:" not in env.connect_log("bob", "alice", "bob")
    for _ in range(10):
        assert env.edge(key="alice") == ALICE
    thief.send_signal(signal.SIGINT)
    thief.wait(20)


def test_a_key_without_a_fork_to_a_laptop_cannot_attach(env):
    """No Sandbox forks cart to a laptop for key dave: the tunnel node has no place for his laptop."""
    p = env.connect("alice", "dave")
    time.sleep(4)
    assert "attached:" not in env.connect_log("alice", "dave")
    assert env.edge(key="dave") == ["HTTP 404"]  # the edge knows no key dave: nothing routes it
    p.send_signal(signal.SIGINT)
    assert p.wait(20) == 0


def test_without_its_laptop_a_key_reaches_the_sandboxs_in_cluster_fork(env):
    """carol's fork to a laptop says `otherwise: {endpoints: ...}`: her key reaches that in-cluster fork until a
    laptop attaches (any certificate of the CA: her fork names no owner), the laptop while it is attached, and the
    in-cluster fork again once it left."""
    assert env.edge(key="carol") == ["web", "cart@pr", "pay"]
    p = env.connect("alice", "carol")
    _attached(env, "alice", "carol")
    env.wait_edge(ALICE, "carol")
    assert env.interrupt(p) == 0
    assert env.edge(key="carol") == ["web", "cart@pr", "pay"]


def test_killing_the_laptops_envoy_fails_no_request(env):
    """The laptop's Envoy is killed under load: every request is answered (the tunnel node retries the "no laptop"
    answer, and a hop reset before any answer, on the baseline) but the one the kill may cut off mid-answer, the key
    reaches the baseline at once, and connect starts Envoy again, which reattaches."""
    connect = env.laptops.get("alice/alice/alice")
    if connect is None or connect.poll() is not None:
        connect = env.connect("alice", "alice")
    _attached(env, "alice", "alice")
    env.wait_edge(ALICE, "alice")
    load = env.start_load("alice", "kill")
    time.sleep(1.0)
    os.kill(env.laptop_envoy(connect), signal.SIGKILL)
    killed = time.monotonic()
    deadline = killed + 30
    while "starting it again" not in env.connect_log("alice", "alice"):
        assert time.monotonic() < deadline, env.connect_log("alice", "alice")
        time.sleep(0.1)
    env.wait_edge(ALICE, "alice")
    summary = env.stop_load(load, "kill")
    assert set(summary["statuses"]) == {"200"}, (summary["failures"], summary)
    # the one request under way (the load sends one at a time) may have been cut off mid-answer by the kill: once
    # the laptop began to answer, nothing can retry it; any request the kill left unanswered was
    assert summary["cut"] <= 1, (summary["failures"], summary)
    assert summary["hop_errors"] == summary["cut"], (summary["failures"], summary)  # no other hop failed
    # every request the kill failed at once got its retry: none was refused for too many retries in flight
    # (Envoy's default allows 3 per cluster; the laptop's aggregate allows tunnel.MAX_RETRIES)
    r = env.ns.run(sys.executable, "-c", "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], "
                   "timeout=5).read().decode())", "http://127.0.0.1:15900/stats?filter=laptop.*alice.*retry")  # tunnel's
    assert r.returncode == 0, r.stderr
    stats = dict(line.split(": ") for line in r.stdout.splitlines() if ": " in line)
    overflow = [v for k, v in stats.items() if k.endswith("upstream_rq_retry_overflow")]
    assert overflow and set(overflow) == {"0"}, stats
    paths = summary["paths"]
    assert ">".join(BASELINE) in paths and ">".join(ALICE) in paths, summary
    assert paths[">".join(BASELINE)] > paths[">".join(ALICE)]  # alice's first, the baseline after the kill


def test_leaving_with_ctrl_c_fails_no_request(env):
    """Ctrl-C under load: the tunnel drains first, so every request is answered, by the laptop until it left and
    by the baseline after; connect exits 0 and says the key is back on the baseline."""
    connect = env.laptops.get("alice/alice/alice")
    if connect is None or connect.poll() is not None:
        connect = env.connect("alice", "alice")
    _attached(env, "alice", "alice")
    env.wait_edge(ALICE, "alice")
    load = env.start_load("alice", "leave")
    time.sleep(1.0)
    assert env.interrupt(connect) == 0
    time.sleep(1.0)
    summary = env.stop_load(load, "leave")
    assert set(summary["statuses"]) == {"200"} and summary["hop_errors"] == 0, (summary["failures"], summary)  # drained
    assert env.edge(key="alice") == BASELINE
    assert "detached: key alice for cart.default reaches the cluster's version again" in env.connect_log("alice", "alice")


def test_env_from_prints_the_baseline_workloads_environment(tmp_path):
    (tmp_path / "k8s.yaml").write_text("""\
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec: {selector: {app: cart}, ports: [{name: http, port: 8080}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cart, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  template:
    metadata: {labels: {app: cart}}
    spec:
      containers:
      - name: cart
        image: cart:1
        envFrom: [{configMapRef: {name: cart-config}}]
        env:
        - {name: PAY_ADDR, value: "pay:8080"}
        - {name: GREETING, value: "it's $(PAY_ADDR)"}
        - name: DB_PASSWORD
          valueFrom: {secretKeyRef: {name: cart-db, key: password}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cart-config, namespace: shop}
data: {REDIS_ADDR: "redis:6379"}
---
apiVersion: v1
kind: Secret
metadata: {name: cart-db, namespace: shop}
stringData: {password: hunter2}
""")
    meshforge = os.path.join(os.path.dirname(sys.executable), "meshforge")
    r = subprocess.run([meshforge, "connect", "cart.shop", "--routing-key", "alice", "--env-from", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["export REDIS_ADDR='redis:6379'", "export PAY_ADDR='pay:8080'",
                                     "export GREETING='it'\\''s pay:8080'"]
    assert "DB_PASSWORD comes from Secret cart-db: left out" in r.stderr
    assert "hunter2" not in r.stdout + r.stderr
    # with a command after --, it runs with that environment (and needs the tunnel's options)
    r = subprocess.run([meshforge, "connect", "cart.shop", "--routing-key", "alice", "--env-from", str(tmp_path),
                        "--", sys.executable, "-c", "pass"], capture_output=True, text=True)
    assert r.returncode == 2 and "needs --to HOST:PORT" in r.stderr, r.stderr


@pytest.mark.parametrize("args, message", [
    (["--routing-key", "Alice"], "is not a routing key"),
    (["--routing-key", "alice", "--to", "127.0.0.1:8080"], "needs --to HOST:PORT"),
    (["--routing-key", "alice", "--to", "127.0.0.1:99999", "--via", "t:1"], "is not HOST:PORT"),
    (["--routing-key", "alice", "--to", "127.0.0.1:8080", "--via", "t:15443"], "mutual TLS only"),
    (["--routing-key", "alice", "--to", "127.0.0.1:8080", "--via", "t:15443", "--tls-ca-file", "/nonexistent",
      "--tls-cert-file", "/nonexistent", "--tls-key-file", "/nonexistent"], "no such file"),
])
def test_connect_usage_errors(args, message):
    meshforge = os.path.join(os.path.dirname(sys.executable), "meshforge")
    r = subprocess.run([meshforge, "connect", "cart", *args], capture_output=True, text=True)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr

