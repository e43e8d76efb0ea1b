"""controller/status: the conditions `kubectl wait` reads, each transition time kept while its status stays."""

from __future__ import annotations

from meshforge.controller import status


def conditions(obs: status.Observed) -> dict[str, tuple[bool, str]]:
    return {c.type: (c.status, c.reason) for c in obs.conditions}


def live(**kw):
    args = dict(invalid=[], expired=False, ready=True, why="", live=True, timed_out=False, key="pr-1",
                preview_url="http://pr-1.preview.test")
    return status.sandbox(3, **{**args, **kw})


def test_a_sandbox_is_ready_only_when_its_workloads_are_and_its_routes_are_live():
    assert conditions(live()) == {"Ready": (True, "Ready"), "WorkloadsReady": (True, "EndpointsReady"),
                                  "RoutesProgrammed": (True, "Programmed"), "Expired": (False, "NotExpired")}
    waiting = live(ready=False, live=False, why="Service cart-pr-1.shop (the fork of cart.shop) has no ready endpoints")
    assert conditions(waiting)["Ready"] == (False, "WaitingForEndpoints")
    assert waiting.conditions[0].message.startswith("Service cart-pr-1.shop")
    assert conditions(live(ready=False, live=False, timed_out=True))["WorkloadsReady"] == (False, "NotReadyInTime")
    assert conditions(live(live=False))["Ready"] == (False, "RoutesPending")
    failed = live(live=False, failed="VirtualService cart: forbidden")
    assert conditions(failed)["Ready"] == (False, "ApplyFailed") == conditions(failed)["RoutesProgrammed"]


def test_an_invalid_or_expired_sandbox_says_so_in_every_condition():
    bad = live(invalid=["s.yaml:3:5: unknown service 'cart'"])
    assert {r for _, r in conditions(bad).values()} == {"Invalid"} and bad.routing_key == "pr-1"
    gone = live(expired=True)
    assert conditions(gone)["Expired"] == (True, "Expired") and not conditions(gone)["Ready"][0]
    assert gone.preview_url is None  # its link goes with it
    assert conditions(status.simple(1, []))["Ready"] == (True, "Accepted")
    assert conditions(status.simple(1, ["x"]))["Ready"] == (False, "Invalid")


def test_a_transition_time_is_kept_while_the_status_stays_and_changes_are_reported():
    first, changed = status.build(live(ready=False, live=False), None, "2026-12-01T10:00:00Z")
    assert {c.type for c in changed} == {"Ready", "WorkloadsReady", "RoutesProgrammed", "Expired"}
    assert first["observedGeneration"] == 3 and first["routingKey"] == "pr-1"
    again, changed = status.build(live(ready=False, live=False), first, "2026-12-01T10:05:00Z")
    assert changed == [] and status.same(first, again)
    ready, changed = status.build(live(), again, "2026-12-01T10:07:00Z")
    times = {c["type"]: c["lastTransitionTime"] for c in ready["conditions"]}
    assert {c.type for c in changed} == {"Ready", "WorkloadsReady", "RoutesProgrammed"}
    assert times == {"Ready": "2026-12-01T10:07:00Z", "WorkloadsReady": "2026-12-01T10:07:00Z",
                     "RoutesProgrammed": "2026-12-01T10:07:00Z", "Expired": "2026-12-01T10:00:00Z"}
    assert not status.same(again, ready) and ready["previewURL"] == "http://pr-1.preview.test"
    long, _ = status.build(live(ready=False, live=False, why="x" * 40_000), None, "t")
    assert len(long["conditions"][0]["message"]) == 32768  # what the API server's condition message takes
