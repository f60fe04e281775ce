"""What the soak's users were told: every acknowledged write, and the writes whose outcome is unknown.

A 2xx answer acknowledges a write: it must be in the final state unless a later acknowledged write
replaced it. A 4xx refused it: nothing changed. A timeout, a broken connection or a 5xx (503 while
Redis is down) leaves the outcome unknown: the write may or may not have happened, so the final
state may show it until a later write is acknowledged. Pure: no I/O, so its rules are unit-tested.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ABSENT = None  # the desired replica count of a service that must not exist


@dataclass
class Ledger:
    acked: dict[str, int | None]  # service -> replicas last acknowledged (ABSENT: deleted)
    unknown: dict[str, set[int | None]] = field(default_factory=dict)  # attempts since, outcome unknown
    counts: dict[str, int] = field(default_factory=lambda: {"acknowledged": 0, "refused": 0, "unknown": 0})

    def record(self, service: str, wanted: int | None, status: int | None) -> str:
        """The answer to a write that wanted `service` at `wanted` replicas (ABSENT: deleted);
        `status` None is no answer at all. Returns how it counts."""
        if status is not None and 200 <= status < 300:
            self.acked[service] = wanted
            self.unknown.pop(service, None)
            verdict = "acknowledged"
        elif status is not None and 400 <= status < 500:
            verdict = "refused"
        else:
            self.unknown.setdefault(service, set()).add(wanted)
            verdict = "unknown"
        self.counts[verdict] += 1
        return verdict

    def acceptable(self, service: str) -> set[int | None]:
        """The replica counts (ABSENT: no service) the final state may show for `service`."""
        return {self.acked.get(service, ABSENT)} | self.unknown.get(service, set())

    def services(self) -> set[str]:
        return set(self.acked) | set(self.unknown)

    def mismatches(self, stored: dict[str, int]) -> list[str]:
        """Each service whose stored replica count (absent from `stored`: no such service) is not
        one the users' answers allow."""
        bad = []
        for service in sorted(self.services() | set(stored)):
            have = stored.get(service, ABSENT)
            allowed = self.acceptable(service)
            if have not in allowed:
                shown = ", ".join("absent" if value is ABSENT else str(value) for value in sorted(
                    allowed, key=lambda value: -1 if value is None else value))
                bad.append(f"{service}: {'absent' if have is ABSENT else have} (acknowledged or possible: {shown})")
        return bad
