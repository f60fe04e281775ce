"""`GET /v1/tasks/{task}/logs?tail=N&follow=true`: a replica's container output, from its node's agent.

The API asks the agent (api/node_calls.py, shared/node_requests.py) and streams the bytes as they
come: stdout and stderr interleaved, as `docker logs` prints them. A follow ends when the container
stops, or when the client leaves: the agent then stops within seconds and the reply is deleted. A
stream whose agent falls silent (it died) ends, and the API logs why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import redis
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from api.context import blocking, settings_of, store_of
from api.node_calls import Call, calls_of, replica
from api.routing import query_of
from shared.errors import Unavailable
from shared.node_requests import LogsRequest, ReplyKind, new_request_id

log = logging.getLogger("gorchester.api")


class RelayedOutput(StreamingResponse):
    """The reply's output as the response body; the call is closed however the response ends."""

    def __init__(self, call: Call, headers: dict[str, str]):
        super().__init__(_output(call), media_type="text/plain; charset=utf-8", headers=headers)
        self.call = call

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.call.close()


async def _output(call: Call) -> AsyncIterator[bytes]:
    try:
        async for reply in call.replies():
            if reply.kind is ReplyKind.DATA:
                yield reply.data
            elif reply.kind is ReplyKind.ERROR:
                log.warning("logs of %s from node %s ended: %s", call.request.task, call.node, reply.message)
    except (Unavailable, redis.RedisError, OSError) as exc:  # the status is sent: the stream can only end
        log.warning("logs of %s from node %s ended: %s", call.request.task, call.node, exc)


async def task_logs(request: Request) -> StreamingResponse:
    task_id = request.path_params["task"]
    query = query_of(request)
    store, misses = store_of(request), settings_of(request).heartbeat_misses
    task = await blocking(lambda: replica(store, task_id, time.time(), misses))
    assert task.node is not None and task.container_id is not None
    call = await calls_of(request).call(task.node, LogsRequest(
        id=new_request_id(), task=task.id, gen=task.gen, incarnation=task.incarnation,
        container_id=task.container_id, tail=query["tail"], follow=query["follow"],
    ))
    headers = {
        "X-Gorchester-Node": task.node, "X-Gorchester-Container": task.container_id,
        "X-Gorchester-Request": call.request.id, "Cache-Control": "no-cache",
    }
    return RelayedOutput(call, headers)
