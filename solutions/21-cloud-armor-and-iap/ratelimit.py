"""A per-tenant rate-based ban, the same rule Cloud Armor enforces in front of the
edge (``infra/armor.py`` builds its policy from ``TENANT_LIMIT``).

Each tenant (the ``x-tenant-id`` header) may send ``count`` requests in an
``interval_seconds`` window; the request after that is refused with 429 and the
tenant stays banned for ``ban_seconds``. Running the same rule locally lets the
load tests and the drills see what production will do, and keeps the edge safe
when it runs without Cloud Armor (``make up``).

    limiter = RateBasedBan(TENANT_LIMIT)
    decision = limiter.check("acme", now=time.monotonic())
    if not decision.allowed: ...  # 429, Retry-After: decision.retry_after
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

TENANT_HEADER = "x-tenant-id"


@dataclass(frozen=True)
class RateLimit:
    count: int
    interval_seconds: int
    ban_seconds: int


TENANT_LIMIT = RateLimit(count=100, interval_seconds=60, ban_seconds=300)
# Requests without a tenant header, counted per client address. Cloud Armor
# throttles them (refuses the excess until the minute ends); the edge's local rule
# bans for one interval, which comes to about the same.
ANONYMOUS_LIMIT = RateLimit(count=300, interval_seconds=60, ban_seconds=60)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: int = 0


@dataclass
class _Window:
    started: float
    count: int = 0
    banned_until: float = 0.0


@dataclass
class RateBasedBan:
    """Counts each key's requests in fixed windows; bans a key that exceeds the
    limit. Process-local: with several edge instances each one counts on its own,
    which is why production relies on Cloud Armor, counting at Google's edge."""

    limit: RateLimit
    max_keys: int = 100_000
    _windows: dict[str, _Window] = field(default_factory=dict)
    _last_forget: float = float("-inf")

    def check(self, key: str, now: float) -> Decision:
        """Count one request from ``key`` at ``now`` (seconds, monotonic)."""
        if key not in self._windows and len(self._windows) >= self.max_keys:
            if now - self._last_forget >= self.limit.interval_seconds:
                self._forget_idle(now)
            if len(self._windows) >= self.max_keys:
                # A flood of made-up keys: refuse new ones rather than grow.
                return Decision(False, self.limit.interval_seconds)
        window = self._windows.get(key)
        if window is None or (
            now >= window.banned_until
            and now - window.started >= self.limit.interval_seconds
        ):
            window = self._windows[key] = _Window(started=now)
        if now < window.banned_until:
            return Decision(False, math.ceil(window.banned_until - now))
        window.count += 1
        if window.count > self.limit.count:
            window.banned_until = now + self.limit.ban_seconds
            return Decision(False, self.limit.ban_seconds)
        return Decision(True)

    def _forget_idle(self, now: float) -> None:
        """Drop keys whose window ended and that are not banned: a flood of made-up
        tenant ids must not grow memory without bound."""
        self._last_forget = now
        self._windows = {
            key: window
            for key, window in self._windows.items()
            if now < window.banned_until
            or now - window.started < self.limit.interval_seconds
        }
