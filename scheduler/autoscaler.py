"""The autoscaler around the pure arithmetic of scheduler/replica_calculator.py: read, decide, apply, remember.

The leading scheduler calls `tick` from its loop; every metrics interval it evaluates each service
with a scale_policy. A decision is applied by writing the service with the new replica count
through the store, compare-and-set on the version it read (so a user's change made meanwhile is
never overwritten); the reconcile then places or stops replicas as for a manual scale. Each action
emits a `service_autoscaled` event with the numbers that caused it.

Its memory (the recommendations of the cooldown window, the time of the last action, the last
decision) is one JSON document per service in the `autoscale` hash in Redis, so a new leader
carries on where the old one stopped: no early scale-down, no second action inside a cooldown.
"""

from __future__ import annotations

import logging
import time

import redis

from scheduler.replica_calculator import Decision, Readiness, Replica, applied, decide
from shared import telemetry
from shared.config import ServiceSpec
from shared.errors import Conflict, NotFound
from shared.event_kinds import EventKind
from shared.records import AutoscaleState, ServiceRecord, TaskRecord, TaskState
from shared.storage import SchedulerStore

log = logging.getLogger("gorchester.scheduler")

NOT_YET_RUNNING = frozenset({TaskState.PENDING, TaskState.ASSIGNED, TaskState.STARTING})


def replicas_of(
    spec: ServiceSpec, tasks: list[TaskRecord], samples: dict[str, telemetry.TaskSample], now: float, interval: float
) -> list[Replica]:
    """Each wanted slot of a service as the arithmetic sees it: measured, missing, unready or ignored."""
    by_slot = {task.slot: task for task in tasks if task.service == spec.service_name}
    result = []
    for slot in range(1, spec.count + 1):
        task = by_slot.get(slot)
        if task is None or task.state in NOT_YET_RUNNING:
            result.append(Replica(task.id if task else f"{spec.service_name}.{slot}", Readiness.UNREADY))
        elif task.state is TaskState.RUNNING:
            sample = samples.get(task.id)
            if (
                sample is not None
                and sample.gen == task.gen
                and sample.container_id == task.container_id
                and telemetry.is_fresh(sample, now, interval)
            ):
                result.append(Replica(task.id, Readiness.MEASURED, sample.cpu_percent, sample.memory_percent))
            else:
                result.append(Replica(task.id, Readiness.MISSING))
        else:
            result.append(Replica(task.id, Readiness.IGNORED))  # failed, stopped, shutting down
    return result


class Autoscaler:
    def __init__(self, store: SchedulerStore, interval: float):
        self.store = store
        self.interval = interval
        self.next_at = 0.0

    def tick(self, now: float | None = None) -> float:
        """Run a pass when one is due; returns the seconds until the next one."""
        now = time.time() if now is None else now
        if now >= self.next_at:
            self.next_at = now + self.interval
            try:
                self.run_once(now)
            except (redis.ConnectionError, redis.TimeoutError):
                raise
            except Exception:  # noqa: BLE001 - a bad pass must not stop the scheduler's loop
                log.exception("autoscaler pass failed")
        return max(self.next_at - now, 0.01)

    def run_once(self, now: float) -> dict[str, Decision]:
        services = self.store.services()
        scaled = {
            name: record for name, record in services.items() if record.spec.scale_policy and not record.deleting
        }
        states = self.store.autoscale_states()
        gone = [name for name in states if name not in scaled]
        if not scaled:
            self.store.write_autoscale_states({}, gone)
            return {}
        tasks = [task for task in self.store.tasks() if task.service in scaled]
        samples = self.store.latest_samples([task.id for task in tasks])
        decisions, written = {}, {}
        for name, record in sorted(scaled.items()):
            replicas = replicas_of(record.spec, tasks, samples, now, self.interval)
            decision, state = decide(record.spec, record.version, replicas, states.get(name, AutoscaleState()), now)
            if decision.act:
                state = self._apply(record, decision, state, now)
            written[name] = state
            decisions[name] = decision
        self.store.write_autoscale_states(written, gone)
        return decisions

    def _apply(self, record: ServiceRecord, decision: Decision, state: AutoscaleState, now: float) -> AutoscaleState:
        name = record.name
        spec = record.spec.model_copy(update={"replicas": decision.desired})
        figures = {result.metric: result.as_dict() for result in decision.metrics}
        numbers = ", ".join(
            f"{metric} {f['utilisation']}% / target {f['target']:g}%"
            for metric, f in figures.items()
            if f["utilisation"] is not None
        )
        message = f"service {name} autoscaled from {decision.current} to {decision.desired} replicas ({numbers})"
        data = {"service": name, "current": decision.current, "desired": decision.desired,
                "direction": decision.direction, "metrics": figures, "reason": decision.reason}
        try:
            new, _ = self.store.update_service(
                spec, now, expected_version=record.version,
                events=lambda _record, _outcome: [(EventKind.SERVICE_AUTOSCALED, message, data)],
            )
        except (Conflict, NotFound) as exc:
            log.info("autoscaler: %s not scaled: %s", name, exc)  # looked at again next pass
            return state
        self.store.count("gorchester_autoscaler_actions", service=name, direction=decision.direction)
        log.info("%s", message)
        return applied(state, decision, new.version, now)
