"""Leases: which viewer owns which server-side session, and when a session is reclaimed.

The protocol's clients claim a lease (a random token they send with every request), prove they
are alive with heartbeats, and release it on close. A session is reclaimed for either of two
reasons, each with its own clock: the user did nothing for ``idle_timeout_s`` (heartbeats do
not count: a window left open still gives its slot back), or the client sent nothing at all for
``liveness_timeout_s`` (it crashed or lost the network). A request with a reclaimed or unknown
token is answered 410; a claim beyond ``max_sessions`` is answered 503. Expiry is checked on
every lookup, so it never depends on when the sweeper last ran; the sweeper only frees slots.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


class LeaseExpired(LookupError):
    """The token is unknown, released or reclaimed (HTTP 410)."""


class ServerFull(RuntimeError):
    """Every session slot is taken (HTTP 503)."""


@dataclass
class Lease(Generic[T]):
    """One claimed session. `lock` serialises that client's own requests."""

    value: T
    last_active: float
    last_seen: float
    lock: threading.Lock = field(default_factory=threading.Lock)


class LeaseRegistry(Generic[T]):
    """Thread-safe token -> Lease map with both timeouts and a capacity."""

    def __init__(
        self,
        factory: Callable[[], T],
        max_sessions: int = 1,
        idle_timeout_s: float = 600.0,
        liveness_timeout_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_sessions < 1 or idle_timeout_s <= 0 or liveness_timeout_s <= 0:
            raise ValueError("LeaseRegistry: max_sessions >= 1 and positive timeouts are required")
        self.factory = factory
        self.max_sessions = int(max_sessions)
        self.idle_timeout_s = float(idle_timeout_s)
        self.liveness_timeout_s = float(liveness_timeout_s)
        self.clock = clock
        self._leases: dict[str, Lease[T]] = {}
        self._mu = threading.Lock()

    def __len__(self) -> int:
        return len(self._leases)

    def claim(self) -> str:
        """A new session and its token; expired sessions are reclaimed first."""
        self.sweep()
        with self._mu:
            if len(self._leases) >= self.max_sessions:
                raise ServerFull(f"server is at capacity ({self.max_sessions} sessions)")
            token = secrets.token_hex(16)
            now = self.clock()
            self._leases[token] = Lease(self.factory(), last_active=now, last_seen=now)
            return token

    def get(self, token: str | None, active: bool = False) -> Lease[T]:
        """The token's lease, marked seen (and active: a real user action, which postpones the
        idle timeout). Raises LeaseExpired."""
        with self._mu:
            lease = self._live(token)
            now = self.clock()
            lease.last_seen = now
            if active:
                lease.last_active = now
            return lease

    def peek(self, token: str | None) -> Lease[T]:
        """The token's lease without touching either clock (a status probe)."""
        with self._mu:
            return self._live(token)

    def release(self, token: str | None) -> bool:
        """Free the token's slot; idempotent (False when there was nothing to free)."""
        with self._mu:
            return self._leases.pop(token or "", None) is not None

    def sweep(self) -> int:
        """Reclaim every expired session; returns how many."""
        with self._mu:
            dead = [t for t, lease in self._leases.items() if self._expired(lease)]
            for t in dead:
                del self._leases[t]
            return len(dead)

    def remaining_s(self, lease: Lease[T]) -> float:
        """Seconds until the idle timeout reclaims the lease."""
        return max(0.0, self.idle_timeout_s - (self.clock() - lease.last_active))

    def _expired(self, lease: Lease[T]) -> bool:
        now = self.clock()
        return (
            now - lease.last_seen > self.liveness_timeout_s or now - lease.last_active > self.idle_timeout_s
        )

    def _live(self, token: str | None) -> Lease[T]:
        """Caller holds _mu."""
        lease = self._leases.get(token or "")
        if lease is None:
            raise LeaseExpired("lease token missing" if not token else "lease expired or unknown")
        if self._expired(lease):
            del self._leases[token or ""]
            raise LeaseExpired("lease expired")
        return lease
