"""Tests of server/leases.py on a simulated clock: capacity, both timeouts, release, sweep."""

from __future__ import annotations

import pytest

from server.leases import LeaseExpired, LeaseRegistry, ServerFull


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _registry(clock: Clock, **kw) -> LeaseRegistry[list]:
    made = iter(range(100))
    return LeaseRegistry(lambda: [next(made)], clock=clock, **kw)


def test_claim_capacity_and_release() -> None:
    clock = Clock()
    reg = _registry(clock, max_sessions=2)
    a, b = reg.claim(), reg.claim()
    assert a != b and len(a) == 32 and len(reg) == 2
    assert reg.get(a).value == [0] and reg.get(b).value == [1]  # one session each
    with pytest.raises(ServerFull, match="2 sessions"):
        reg.claim()
    assert reg.release(a) and not reg.release(a) and not reg.release(None)
    assert reg.get(reg.claim()).value == [2]
    with pytest.raises(LeaseExpired, match="unknown"):
        reg.get(a)
    with pytest.raises(LeaseExpired, match="missing"):
        reg.get(None)


def test_idle_timeout_counts_only_user_actions() -> None:
    clock = Clock()
    reg = _registry(clock, idle_timeout_s=100, liveness_timeout_s=30)
    token = reg.claim()
    for _ in range(4):  # heartbeats keep it alive but do not postpone the idle timeout
        clock.t += 25
        lease = reg.get(token)
    assert reg.remaining_s(lease) == pytest.approx(0.0)
    clock.t += 1
    with pytest.raises(LeaseExpired, match="expired"):
        reg.get(token)
    assert len(reg) == 0


def test_user_actions_postpone_the_idle_timeout_and_peek_touches_nothing() -> None:
    clock = Clock()
    reg = _registry(clock, idle_timeout_s=100, liveness_timeout_s=30)
    token = reg.claim()
    for _ in range(10):
        clock.t += 20
        reg.get(token, active=True)
    assert reg.remaining_s(reg.peek(token)) == pytest.approx(100.0)
    clock.t += 29
    reg.peek(token)  # a status probe is no sign of life
    clock.t += 2
    with pytest.raises(LeaseExpired):
        reg.peek(token)  # silent for 31 s > liveness 30 s: the client is gone


def test_sweep_frees_slots_and_claim_sweeps_first() -> None:
    clock = Clock()
    reg = _registry(clock, max_sessions=1, idle_timeout_s=10, liveness_timeout_s=5)
    reg.claim()
    with pytest.raises(ServerFull):
        reg.claim()
    clock.t += 6
    assert reg.claim()  # the dead client's slot was reclaimed
    clock.t += 6
    assert reg.sweep() == 1 and len(reg) == 0


def test_bad_settings() -> None:
    with pytest.raises(ValueError):
        LeaseRegistry(list, max_sessions=0)
    with pytest.raises(ValueError):
        LeaseRegistry(list, idle_timeout_s=0)
