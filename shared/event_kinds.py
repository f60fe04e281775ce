"""The kinds of the cluster's events: the `type` of each entry of `GET /v1/events`, and the label of
the scheduler's event counter in `GET /metrics`. Public names: a kind is added, never renamed."""

from __future__ import annotations

from enum import StrEnum


class EventKind(StrEnum):
    # services: the API's changes, the scheduler's rollouts and judgement, the autoscaler
    SERVICE_CREATED = "service_created"
    SERVICE_UPDATED = "service_updated"
    SERVICE_DELETED = "service_deleted"
    SERVICE_SCALED = "service_scaled"
    SERVICE_AUTOSCALED = "service_autoscaled"
    SERVICE_UPDATE_STARTED = "service_update_started"
    SERVICE_UPDATE_COMPLETED = "service_update_completed"
    SERVICE_ROLLED_BACK = "service_rolled_back"
    SERVICE_UPDATE_PAUSED = "service_update_paused"
    SERVICE_UPDATE_RESUMED = "service_update_resumed"
    SERVICE_REBALANCE_STARTED = "service_rebalance_started"
    SERVICE_REBALANCED = "service_rebalanced"
    SERVICE_FAILED = "service_failed"
    SERVICE_RECOVERED = "service_recovered"
    # tasks: the scheduler's decisions, the agents' reports, a user's stop
    TASK_SCHEDULED = "task_scheduled"
    TASK_RESCHEDULED = "task_rescheduled"
    TASK_RESTARTED = "task_restarted"
    TASK_UPDATED = "task_updated"
    TASK_PENDING = "task_pending"
    TASK_UNREADABLE = "task_unreadable"
    TASK_STARTED = "task_started"
    TASK_FAILED = "task_failed"
    TASK_STOP_REQUESTED = "task_stop_requested"
    # nodes: agents joining, the scheduler's judgement, an operator's drain
    NODE_ADDED = "node_added"
    NODE_READY = "node_ready"
    NODE_NOT_READY = "node_not_ready"
    NODE_DOWN = "node_down"
    NODE_DRAINING = "node_draining"
    NODE_ACTIVATED = "node_activated"
    NODE_UNREADABLE = "node_unreadable"
    NODE_REMOVED = "node_removed"
    # the control plane
    LEADER_CHANGED = "leader_changed"

