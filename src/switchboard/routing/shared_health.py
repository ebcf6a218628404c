"""Breaker transitions shared by the workers of one host, without Redis.

What `RedisHealthSync` does across replicas, for the workers of `serve --workers N`:
failure counting stays per worker (a worker opens a breaker on its own evidence), and
each transition (opened until T, closed) is written to a table in shared memory
(`SharedWords`) that every worker applies to its own breakers. Without it, a deployment
that one worker has found broken keeps receiving the other workers' requests until each
has collected its own failures.

One entry per deployment holds its latest transition, stamped with a generation counter
that every write increments. A worker compares the counter with the last one it applied
whenever it asks whether a deployment is available (one memory read), and reads the
entries stamped since, under the lock, only when it moved. Because an entry keeps only
the latest transition, workers cannot apply two transitions in different orders.
"""

from __future__ import annotations

import logging
import os

from switchboard.routing.health import HALF_OPEN, Health
from switchboard.shared_memory import EMPTY, SharedWords, key64

log = logging.getLogger("switchboard.health")

_FIELDS = 5  # key, state, open until (wall clock, us), writer's pid, generation stamp
_KEY, _STATE, _UNTIL, _PID, _STAMP = range(_FIELDS)


class SharedBreakers:
    """The table; create it before forking, sized for the deployments of the config."""

    def __init__(self, deployments: int = 32) -> None:
        self.entries = max(64, 2 * deployments)
        self._shared = SharedWords(1 + self.entries * _FIELDS, "breakers")  # word 0: the generation
        self.q = self._shared.q
        self.locked = self._shared.locked

    def write(self, key: int, state: int, until_us: int, pid: int) -> bool:
        """Record a transition (under the lock); False when the table has no room for `key`."""
        q = self.q
        start = key % self.entries
        for i in range(self.entries):
            off = 1 + ((start + i) % self.entries) * _FIELDS
            if q[off] == key or q[off] == EMPTY:
                generation = q[0] + 1
                q[off + _KEY], q[off + _STATE], q[off + _UNTIL] = key, state, until_us
                q[off + _PID], q[off + _STAMP] = pid, generation
                q[0] = generation
                return True
        return False

    def since(self, seen: int) -> tuple[int, list[tuple[int, int, int, int]]]:
        """(generation, [(key, state, until_us, pid)] of the entries written after `seen`), under the lock."""
        q = self.q
        changed = []
        for i in range(self.entries):
            off = 1 + i * _FIELDS
            if q[off] != EMPTY and q[off + _STAMP] > seen:
                changed.append((q[off], q[off + _STATE], q[off + _UNTIL], q[off + _PID]))
        return q[0], changed


class SharedHealthSync:
    """One worker's link between its `Health` and the host's `SharedBreakers`."""

    def __init__(self, health: Health, table: SharedBreakers) -> None:
        self.health = health
        self.table = table
        self.pid = os.getpid()
        self.seen = 0
        self._keys = {dep_id: key64(name) for dep_id, name in health.shared_names.items()}
        self._dep_ids = {key: dep_id for dep_id, key in self._keys.items()}
        self._warned = False

    def start(self) -> None:
        """Adopt the transitions written so far (a restarted worker finds its peers' open breakers)."""
        self.health.listeners.append(self._publish)
        self.health.registered.append(self.adopt)
        self.health.refresh = self.refresh
        self.refresh()

    def adopt(self, dep_id: str) -> None:
        """A deployment added after start: share it, and take on what a peer wrote of it already."""
        key = self._keys[dep_id] = key64(self.health.shared_names[dep_id])
        self._dep_ids[key] = dep_id
        _, entries = self.table.locked(self.table.since, 0)
        for entry_key, state, until_us, pid in entries:
            if entry_key == key and pid != self.pid:
                self.health.apply_remote(dep_id, state, until_us / 1e6)

    def refresh(self) -> None:
        """Apply the other workers' transitions written since the last call."""
        if self.table.q[0] == self.seen:
            return
        self.seen, changed = self.table.locked(self.table.since, self.seen)
        for key, state, until_us, pid in changed:
            dep_id = self._dep_ids.get(key)
            if pid != self.pid and dep_id is not None:
                self.health.apply_remote(dep_id, state, until_us / 1e6)

    def _publish(self, dep_id: str, state: int, wall_until: float, reason: str) -> None:
        key = self._keys.get(dep_id)
        if state == HALF_OPEN or key is None:
            return  # half-open is a local, time-derived state
        if not self.table.locked(self.table.write, key, state, int(wall_until * 1e6), self.pid) and not self._warned:
            self._warned = True
            log.warning("the shared breaker table is full: breaker %s stays per worker", dep_id)
