"""The soak's report: a summary row per soak, then each soak's faults, checks and the injector's own errors."""

from __future__ import annotations

from dataclasses import dataclass

from bench import harness
from bench.chaos.checks import Outcome
from bench.chaos.faults import Chaos


@dataclass
class Soak:
    seed: int
    duration: float
    chaos: Chaos
    outcome: Outcome

    @property
    def passed(self) -> bool:
        return self.outcome.clean_after is not None and not self.chaos.hostile_defects()


def _seconds(value: float | None, settle: float) -> str:
    return f"{value:.1f} s" if value is not None else f"not within {settle:.0f} s"


def summary(soaks: list[Soak], settle: float) -> str:
    rows = []
    for number, soak in enumerate(soaks, 1):
        made, skipped = soak.chaos.counts()
        ledger = soak.chaos.ledger.counts
        rows.append([
            number, soak.seed, f"{soak.duration:.0f} s",
            ", ".join(f"{kind} {made[kind]}" for kind in soak.chaos.kinds) + f" (total {sum(made.values())})",
            sum(skipped.values()), len(soak.chaos.errors),
            f"{ledger['acknowledged']}/{ledger['refused']}/{ledger['unknown']}",
            f"{len(soak.chaos.answers)} / {len(soak.chaos.hostile_defects())}",
            _seconds(soak.outcome.running_after, settle), _seconds(soak.outcome.clean_after, settle),
            "pass" if soak.passed else "**FAIL**",
        ])
    header = ["soak", "seed", "length", "faults made", "not made", "injector errors",
              "writes ack/refused/unknown", "hostile requests / defects", "running == desired after",
              "every invariant after", "outcome"]
    return harness.markdown_table(header, rows)


def details(number: int, soak: Soak, settle: float) -> str:
    chaos, outcome = soak.chaos, soak.outcome
    early = (
        "All invariants already held at that moment."
        if not outcome.first_failures
        else "At that moment not yet: " + "; ".join(f"{c.name}: {c.detail}" for c in outcome.first_failures)
    )
    check_rows = [[c.name, "pass" if c.ok else "**FAIL**", c.detail] for c in outcome.checks]
    defects = chaos.hostile_defects()
    hostile = (
        f"Hostile requests: {len(chaos.answers)} sent, "
        + (f"**{len(defects)} not refused properly**: " + "; ".join(defects) if defects else "every one refused")
        + "."
    ) if "hostile" in chaos.kinds else ""
    errors = "\n".join(f"- {e.at:6.1f} s {e.kind}: {e.error}" for e in chaos.errors) or "- none"
    skips = "\n".join(f"- {s.at:6.1f} s {s.kind}: {s.why}" for s in chaos.skips) or "- none"
    supervised = "\n".join(f"- {f.at:6.1f} s {f.detail}" for f in chaos.supervised) or "- none"
    faults = "\n".join(f"- {f.at:6.1f} s {f.kind}: {f.detail}" for f in chaos.faults)
    return (
        f"<details><summary>Soak {number} (seed {soak.seed}): "
        f"{'pass' if soak.passed else 'FAIL'}</summary>\n\n"
        f"Every service at running == desired after {_seconds(outcome.running_after, settle)}; every invariant "
        f"held after {_seconds(outcome.clean_after, settle)}. {early}\n\n"
        f"{harness.markdown_table(['invariant', 'outcome', 'detail'], check_rows)}\n\n"
        f"{hostile}\n\n"
        f"The injector's own errors (not the cluster's):\n\n{errors}\n\n"
        f"Faults not made (their target was gone):\n\n{skips}\n\n"
        f"Agents that exited at start-up (Redis out of reach), started again as their supervisor would:\n\n"
        f"{supervised}\n\n"
        f"Faults in order (seconds since the soak started):\n\n{faults}\n\n</details>\n"
    )


def render(command: str, machine: str, setup: str, soaks: list[Soak], settle: float) -> str:
    passed = sum(1 for soak in soaks if soak.passed)
    return (
        f"_Command:_ `{command}`\n\n"
        f"_Machine:_ {machine}\n\n"
        f"_Setup:_ {setup}\n\n"
        f"**{len(soaks)} soak(s), {passed} passed.** Settle times are counted from the moment every killed "
        f"process was running again.\n\n"
        f"{summary(soaks, settle)}\n\n"
        + "\n".join(details(number, soak, settle) for number, soak in enumerate(soaks, 1))
    )
