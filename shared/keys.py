"""The one place that spells Redis keys. Every key lives under `gorchester:{cluster}:` so that
several clusters can share one Redis; docs/redis-layout.md describes each."""

from __future__ import annotations

import hashlib
import re

ROOT = "gorchester"
RQ_JOB_ID = re.compile(r"[A-Za-z0-9_-]+")  # what RQ accepts as a job id


class Keys:
    def __init__(self, cluster: str):
        self.cluster = cluster
        self.prefix = f"{ROOT}:{cluster}"

    @property
    def schema(self) -> str:
        """String: the layout version the cluster's data is written in (shared/storage/schema.py)."""
        return f"{self.prefix}:schema"

    @property
    def services(self) -> str:
        """Hash: service name -> ServiceRecord JSON."""
        return f"{self.prefix}:services"

    @property
    def assignments(self) -> str:
        """Hash: task id (`web.1`) -> Assignment JSON, the scheduler's decision (shared/task_parts.py)."""
        return f"{self.prefix}:assignments"

    @property
    def statuses(self) -> str:
        """Hash: task id -> TaskStatus JSON, what the assigned node's agent found of that decision."""
        return f"{self.prefix}:statuses"

    def node_tasks(self, node_id: str) -> str:
        """Set: the ids of the tasks whose assignment names the node (as its node, or its previous
        container's); the scheduler keeps it with the assignments, so an agent reads only its own."""
        return f"{self.prefix}:node:{node_id}:tasks"

    def node_revision(self, node_id: str) -> str:
        """String: a token replaced by every write of an assignment naming the node or of its tasks'
        status (its agent's health monitor looks again only when it changed)."""
        return f"{self.prefix}:node:{node_id}:revision"

    @property
    def stops(self) -> str:
        """Hash: task id -> StopRequest JSON, a user's stop the scheduler has not yet folded in."""
        return f"{self.prefix}:stops"

    @property
    def legacy_tasks(self) -> str:
        """Hash of layout version 1: task id -> the whole TaskRecord JSON (migrated, shared/storage/schema.py)."""
        return f"{self.prefix}:tasks"

    @property
    def nodes(self) -> str:
        """Set of registered node ids."""
        return f"{self.prefix}:nodes"

    def node(self, node_id: str) -> str:
        """Hash: a node's registration, heartbeat time and usage (NodeRecord fields, JSON values)."""
        return f"{self.prefix}:node:{node_id}"

    def node_requests(self, node_id: str) -> str:
        """List with expiry: the API's requests to a node's agent (logs, exec) as JSON, oldest first
        (shared/node_requests.py)."""
        return f"{self.prefix}:node:{node_id}:requests"

    def reply(self, request_id: str) -> str:
        """Stream with expiry: the agent's reply to one request, read and trimmed by the API."""
        return f"{self.prefix}:reply:{request_id}"

    def reader(self, request_id: str) -> str:
        """String with a short expiry: the API still reads this request's reply (it keeps it alive)."""
        return f"{self.prefix}:reply:{request_id}:reading"

    @property
    def changes(self) -> str:
        """Pub/sub channel: something changed, reconcile now (the payload is only a hint)."""
        return f"{self.prefix}:changes"

    @property
    def events(self) -> str:
        """Stream (capped): the cluster's events, newest last."""
        return f"{self.prefix}:events"

    @property
    def leader(self) -> str:
        """String with expiry: the scheduler holding the lease."""
        return f"{self.prefix}:leader"

    @property
    def heard_since(self) -> str:
        """String: the time (JSON number) since when the leading scheduler has heard Redis without a
        break, since it took the lease or Redis answered again; nodes' silence counts only from then
        (NodeRecord.down_at). Only the leader writes it; the API reads it to judge nodes alike."""
        return f"{self.prefix}:heard_since"

    def task_metrics(self, task_id: str) -> str:
        """List (capped, with expiry): a task's usage samples as JSON, newest first (shared/telemetry.py)."""
        return f"{self.prefix}:metrics:task:{task_id}"

    @property
    def faults(self) -> str:
        """Hash: service name -> ServiceFault JSON, why the scheduler cannot handle that service.
        Only the leading scheduler writes it."""
        return f"{self.prefix}:faults"

    @property
    def autoscale(self) -> str:
        """Hash: service name -> the autoscaler's state JSON (recommendations, last decision and action)."""
        return f"{self.prefix}:autoscale"

    @property
    def telemetry(self) -> str:
        """Hash: counters and histogram buckets the scheduler and agents record for `GET /metrics`."""
        return f"{self.prefix}:telemetry"

    def queue(self, node_id: str) -> str:
        """The RQ queue name of a node; RQ stores it as `rq:queue:<this>`."""
        return f"{self.prefix}:{node_id}"

    def job_id(self, action: str, task: str, gen: int, incarnation: str) -> str:
        """Jobs are named for what they do, so the same decision enqueued twice is one job.

        RQ allows only [A-Za-z0-9_-] in job ids; cluster and service names are DNS labels, so `_`
        separates the parts unambiguously. A name that is not (a record written by hand) gives a
        digest instead: RQ refusing the id would stop the whole pass that enqueues it.
        """
        decision = f"{action}_{task.replace('.', '_')}_{incarnation + '_' if incarnation else ''}{gen}"
        job_id = f"{ROOT}_{self.cluster}_{decision}"
        if RQ_JOB_ID.fullmatch(job_id):
            return job_id
        return f"{ROOT}_{hashlib.sha256(job_id.encode(errors='replace')).hexdigest()[:32]}"

    def batch_job_id(self, digest: str) -> str:
        """A batch job (several decisions for one node) is named for a digest of its decisions."""
        return f"{ROOT}_{self.cluster}_batch_{digest}"

    def history(self, service: str) -> str:
        """List (capped): a service's rollout history, JSON entries newest first (shared/storage/history.py);
        each written once, by the writer of the version it records."""
        return f"{self.prefix}:history:{service}"

    @property
    def changelog(self) -> str:
        """Stream: one entry per write of services, tasks or faults, naming what it changed; its last
        id is the data's revision (shared/storage/changelog.py)."""
        return f"{self.prefix}:changelog"

    @property
    def legacy_revision(self) -> str:
        """String of layout version 2: a token replaced by every write (the change log replaced it)."""
        return f"{self.prefix}:revision"

    def engine_lock(self, engine_id: str, what: str) -> str:
        """String with expiry (redis-py's Lock): held while one agent makes `what` (say, a network) on the
        engine `engine_id`, which other agents of the cluster may share."""
        return f"{self.prefix}:lock:engine:{engine_id}:{what}"

    @property
    def subnets(self) -> str:
        """Hash: engine id -> the /24 of the pod range its bridge of the cluster has (shared/podnet.py);
        written by the node agents, each for its own engine, under that engine's lock."""
        return f"{self.prefix}:subnets"
