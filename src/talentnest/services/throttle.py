"""Login throttling (failed logins) and write limits (posts, comments, likes, follows), per account and per
client address, counted in sliding windows.

For logins, each node counts the failures it sees itself and allows its share of a cluster-wide allowance:
``ceil(allowance / n)`` where ``n`` is the number of nodes that share the limit (the live nodes,
given by an injected callable). An attacker who spreads attempts over every node therefore gets
at most ``n * ceil(allowance / n) < allowance + n`` failures per window, never ``n * allowance``.
Nothing is replicated: a node that restarts forgets its counts (it then allows one share again).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from talentnest.errors import TooManyRequests

# Keys kept at most per kind; the least recently failed are forgotten first, so a flood of
# made-up usernames costs bounded memory (and the per-address limit stops such a flood anyway).
MAX_KEYS = 100_000


@dataclass(frozen=True)
class ThrottlePolicy:
    """Cluster-wide allowances: failures per account and per client address within ``window`` seconds."""

    per_account: int = 10
    per_address: int = 100
    window: float = 900.0
    max_keys: int = MAX_KEYS


class _Window:
    """Failure times per key within the window, at most MAX_KEYS keys."""

    def __init__(self, window: float, max_keys: int):
        self.window = window
        self.max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.get(key)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
        return failures

    def add(self, key: str, now: float) -> None:
        failures = self._failures.get(key)
        if failures is None:
            failures = self._failures[key] = deque()
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(key)
        failures.append(now)

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)

    def retry_after(self, key: str, allowed: int, now: float) -> float | None:
        """Seconds until ``key`` is below ``allowed`` failures again; None if it already is."""
        failures = self.recent(key, now)
        if len(failures) < allowed:
            return None
        # The oldest len - allowed + 1 failures must leave the window first.
        return failures[len(failures) - allowed] + self.window - now


class LoginThrottle:
    """Refuses a login with TooManyRequests while its account or its client address has failed too often.

    ``check`` comes before the password is verified (a refused attempt costs no hashing and is not
    counted), ``failed`` after a wrong password, ``succeeded`` after a right one: a success clears
    that account's failures only, never another account's nor the address's (or an attacker could
    reset the address count by logging in to an account of their own between guesses).
    """

    def __init__(
        self,
        policy: ThrottlePolicy,
        *,
        sharing_nodes: Callable[[], int] = lambda: 1,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.policy = policy
        self._sharing_nodes = sharing_nodes
        self._clock = clock
        self._accounts = _Window(policy.window, policy.max_keys)
        self._addresses = _Window(policy.window, policy.max_keys)

    def _share(self, allowance: int) -> int:
        """This node's part of a cluster-wide allowance."""
        try:
            nodes = max(1, int(self._sharing_nodes()))
        except Exception:  # the count is advisory; never fail a login because it is unavailable
            nodes = 1
        return max(1, math.ceil(allowance / nodes))

    def check(self, account: str, address: str | None) -> None:
        now = self._clock()
        waits = [
            self._accounts.retry_after(account, self._share(self.policy.per_account), now),
            None if address is None else self._addresses.retry_after(address, self._share(self.policy.per_address), now),
        ]
        for wait, what in zip(waits, ("this account", "this address"), strict=True):
            if wait is not None:
                raise TooManyRequests(
                    f"too many failed logins for {what}; try again later", retry_after=_seconds(wait), code="login_throttled"
                )

    def failed(self, account: str, address: str | None) -> None:
        now = self._clock()
        self._accounts.add(account, now)
        if address is not None:
            self._addresses.add(address, now)

    def succeeded(self, account: str) -> None:
        self._accounts.clear(account)


def _seconds(wait: float) -> int:
    return max(1, math.ceil(wait))


@dataclass(frozen=True)
class WritePolicy:
    """Writes (posts, comments, likes, follows) allowed per account and per client address within
    ``window`` seconds; 0 turns a limit off."""

    per_account: int = 300
    per_address: int = 3000
    window: float = 60.0
    max_keys: int = MAX_KEYS


class WriteLimiter:
    """Refuses a write with TooManyRequests once its account or its client address has made its
    allowance of writes within the window; an accepted write is counted, a refused one is not.

    Writes run on the leader only (a follower forwards them, naming the client in a signed
    ``X-Forwarded-For``), so the leader's counts are cluster-wide and the whole allowance is its own
    (unlike logins, which every node answers: ``LoginThrottle``). A new leader starts counting afresh.
    """

    def __init__(self, policy: WritePolicy, *, clock: Callable[[], float] = time.monotonic):
        self.policy = policy
        self._clock = clock
        self._accounts = _Window(policy.window, policy.max_keys)
        self._addresses = _Window(policy.window, policy.max_keys)

    def admit(self, user_id: int, address: str | None) -> None:
        now = self._clock()
        checks = [(self._accounts, f"user:{user_id}", self.policy.per_account, "this account")]
        if address is not None:
            checks.append((self._addresses, address, self.policy.per_address, "this address"))
        for window, key, allowed, what in checks:
            wait = window.retry_after(key, allowed, now) if allowed else None
            if wait is not None:
                raise TooManyRequests(
                    f"too many writes from {what} (at most {allowed} in {self.policy.window:g} s); try again later",
                    retry_after=_seconds(wait),
                    code="write_rate_limited",
                )
        for window, key, allowed, _ in checks:
            if allowed:
                window.add(key, now)
