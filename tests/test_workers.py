"""`serve --workers N`: the xDS port served by N processes of serve (SO_REUSEPORT), each compiling the same specs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from .serve_harness import CLUSTER, RawClient, Server, api_sandbox, eds_name, node, protocol_specs, wait_until


def _pids(parent: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def test_the_port_is_served_by_every_worker_with_the_same_versions_and_changes_reach_them_all(tmp_path):
    d = protocol_specs(tmp_path)
    with Server([d], args=("--workers", "2", "--no-access-logs")) as s:
        wait_until(lambda: len(_pids(s.proc.pid)) == 1 and s.log().count("serving xDS") == 2, 20, what="the worker")
        (worker,) = _pids(s.proc.pid)
        clients = [RawClient(s.xds_port, own_connection=True) for _ in range(24)]  # the kernel spreads them
        try:
            first = []
            for c in clients:
                c.send(node=node("web.shop"), type_url=CLUSTER)
                r = c.recv(10)
                assert r is not None, c.error
                c.send(type_url=CLUSTER, version_info=r.version_info, response_nonce=r.nonce)
                first.append(r.version_info)
            assert len(set(first)) == 1  # one version whichever process answered
            here = s.metric("meshforge_connected_proxies", 'stream="sotw"')
            assert 0 < here < 24, here  # the parent holds some of the streams, the worker the others
            (d / "pr-2.yaml").write_text(api_sandbox("pr-2"))
            pushed = [c.recv(10) for c in clients]
            assert all(r is not None and eds_name("pr-2") in str(r) for r in pushed)
            assert len({r.version_info for r in pushed}) == 1 and pushed[0].version_info != first[0]
        finally:
            for c in clients:
                c.close()
        os.kill(worker, signal.SIGKILL)  # a worker that dies is started again
        wait_until(lambda: "starting it again" in s.log() and len(_pids(s.proc.pid)) == 1 and
                   s.log().count("serving xDS") == 3, 20, what="restarted")
        assert _pids(s.proc.pid) != [worker]
        c = RawClient(s.xds_port, own_connection=True)
        try:
            c.send(node=node("web.shop"), type_url=CLUSTER)
            assert c.recv(10) is not None
        finally:
            c.close()
        (worker,) = _pids(s.proc.pid)
    deadline = time.monotonic() + 10  # stopping serve stops its workers
    while time.monotonic() < deadline and os.path.exists(f"/proc/{worker}") and \
            "zombie" not in open(f"/proc/{worker}/status").read():
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{worker}") or "zombie" in open(f"/proc/{worker}/status").read()


def test_a_second_serve_on_a_port_the_workers_share_is_still_refused(tmp_path):
    d = protocol_specs(tmp_path)
    with Server([d], args=("--workers", "2", "--no-access-logs")) as s:
        r = subprocess.run([sys.executable, "-m", "meshforge.cli", "serve", str(d), "--xds-address",
                            f"127.0.0.1:{s.xds_port}"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "already in use" in r.stderr


def test_workers_need_access_logs_off(tmp_path):
    r = subprocess.run([sys.executable, "-m", "meshforge.cli", "serve", str(protocol_specs(tmp_path)), "--xds-address",
                        "127.0.0.1:0", "--workers", "2"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--workers N needs --no-access-logs" in r.stderr and "Traceback" not in r.stderr


class _Proc:
    """A worker process as Workers sees one: running until `exit()`."""

    pids = iter(range(1000, 2000))

    def __init__(self):
        self.pid, self.returncode = next(self.pids), None

    def poll(self):
        return self.returncode

    def exit(self, code=1):
        self.returncode = code


def _workers(count: int):
    from meshforge.server.control import Workers

    w = Workers(count, ["serve"])
    spawned: list[_Proc] = []

    def spawn():
        spawned.append(_Proc())
        return spawned[-1]

    w._spawn = spawn
    w.start("127.0.0.1:1")
    return w, spawned


def test_a_worker_that_ran_a_while_is_started_again_at_once_one_that_keeps_crashing_later_and_later():
    from meshforge.server.control import QUICK_EXIT, restart_delay

    assert [restart_delay(n) for n in range(8)] == [0, 0, 1, 2, 4, 8, 16, 32]
    assert restart_delay(50) == 60  # bounded
    w, spawned = _workers(2)
    t = w.slots[0].started
    spawned[0].exit()  # the first exit soon after the start: maybe a kill, started again at once
    w.tick(t + 1)
    assert len(spawned) == 2 and w.procs[0] is spawned[1]
    starts = [t + 1]
    for n, delay in ((2, 1), (3, 2), (4, 4)):  # it keeps exiting soon after each start: 1, 2, 4 s apart
        spawned[-1].exit()
        now = starts[-1] + 0.5
        w.tick(now)
        assert len(spawned) == n, "not started again before its delay"
        w.tick(now + delay - 0.01)
        assert len(spawned) == n
        w.tick(now + delay)
        assert len(spawned) == n + 1 and w.slots[0].quick_exits == n
        starts.append(now + delay)
    spawned[-1].exit()  # then it runs a while before exiting: the back-off is forgotten
    w.tick(starts[-1] + QUICK_EXIT + 1)
    assert len(spawned) == 6 and w.slots[0].quick_exits == 0
    w.stopping = True  # while serve stops, nothing is started again
    spawned[-1].exit()
    w.tick(starts[-1] + 100)
    assert len(spawned) == 6


def test_each_worker_slot_has_its_own_back_off():
    w, spawned = _workers(3)
    t = w.slots[0].started
    for _ in range(3):  # slot 0 keeps crashing
        w.procs[0].exit()
        w.tick(t := t + 0.5)
        if w.slots[0].due is not None:
            w.tick(t := w.slots[0].due)
    assert [slot.quick_exits for slot in w.slots] == [3, 0] and w.procs[1] is spawned[1] and spawned[1].poll() is None
    w.procs[1].exit()  # slot 1's first exit is restarted at once, whatever slot 0 did
    w.tick(t + 0.5)
    assert w.procs[1] is spawned[-1] and w.slots[1].quick_exits == 1
