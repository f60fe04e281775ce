"""`GET /v1/tasks/{task}/logs?tail=N&follow=true`: a replica's container output, wherever its node is.

Each node agent registers how its Docker engine is reached (`engine_url` on the node record:
GORCHESTER_NODE_ENGINE_URL, else DOCKER_HOST, else the local socket). The API opens the
container's logs with the docker SDK at that URL and streams the bytes as they come (stdout and
stderr interleaved, as `docker logs` prints them). A follow stream ends when the container stops
or the client goes away; a reader thread per stream does the blocking reads, so a quiet container
never holds one of the server's shared worker threads, and closing the engine's stream ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import docker
import docker.errors
import requests
from starlette.requests import Request
from starlette.responses import StreamingResponse

from api.context import blocking, store_of
from api.routing import query_of
from shared.errors import Conflict, Unavailable

log = logging.getLogger("gorchester.api")

ENGINE_TIMEOUT = 10.0  # seconds for the engine to answer opening the logs; the stream itself has none
_END = object()


class LogSource:
    """One open log stream from a node's engine; `close()` may be called from any thread."""

    def __init__(self, client: docker.DockerClient, stream: Any):
        self.client = client
        self.stream = stream
        self._closed = threading.Event()

    def chunks(self) -> Iterator[bytes]:
        if isinstance(self.stream, bytes):  # not following and the engine sent it whole
            yield self.stream
            return
        yield from self.stream

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        with contextlib.suppress(Exception):  # closing a stream the engine already ended
            if hasattr(self.stream, "close"):
                self.stream.close()
        with contextlib.suppress(Exception):
            self.client.close()


def open_logs(engine_url: str, node: str, container_id: str, task_id: str, tail: int | str, follow: bool) -> LogSource:
    """Open the container's log stream on its node's engine; errors map to 409 (gone) or 503 (engine)."""
    try:
        client = docker.DockerClient(base_url=engine_url, timeout=ENGINE_TIMEOUT)
    except docker.errors.DockerException as exc:
        raise Unavailable(f"node {node}'s engine at {engine_url} is not usable: {exc}") from None
    try:
        stream = client.api.logs(container_id, stdout=True, stderr=True, stream=True, follow=follow, tail=tail)
    except docker.errors.NotFound:
        client.close()
        raise Conflict(f"task {task_id!r}: its container {container_id[:12]} no longer exists on {node}") from None
    except (docker.errors.DockerException, requests.RequestException) as exc:
        client.close()
        raise Unavailable(f"node {node}'s engine at {engine_url} did not answer: {exc}") from None
    return LogSource(client, stream)


async def relay(source: LogSource) -> AsyncIterator[bytes]:
    """The stream's chunks, read by a thread of its own; the engine's stream is closed however it ends."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=256)

    def put(item: object) -> None:
        """Hand a chunk to the response, waiting while the client is slow, giving up once closed."""
        try:
            future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        except RuntimeError:  # the loop closed while the reader was finishing
            return
        while True:
            try:
                future.result(timeout=0.5)
                return
            except TimeoutError:
                if source.closed:
                    future.cancel()
                    return

    def read() -> None:
        try:
            for chunk in source.chunks():
                if source.closed:
                    break
                put(chunk)
        except Exception as exc:  # noqa: BLE001 - a closed socket ends the stream; anything else is logged
            if not source.closed:
                log.warning("log stream ended with an error: %s", exc)
        finally:
            put(_END)

    reader = threading.Thread(target=read, name="logs-reader", daemon=True)
    reader.start()
    try:
        while True:
            item = await queue.get()
            if item is _END:
                return
            assert isinstance(item, bytes)
            yield item
    finally:
        source.close()  # ends the reader: its socket is shut down and its pending hand-over given up


async def task_logs(request: Request) -> StreamingResponse:
    task_id = request.path_params["task"]
    query = query_of(request)
    tail, follow = query["tail"], query["follow"]
    store = store_of(request)
    task = await blocking(lambda: store.task(task_id))
    if task.container_id is None or task.node is None:
        raise Conflict(f"task {task_id!r} has no container (it is {task.state.value})")
    node = await blocking(lambda: store.node(task.node or ""))
    container_id = task.container_id
    source = await asyncio.to_thread(open_logs, node.engine_url, node.id, container_id, task_id, tail, follow)
    headers = {"X-Gorchester-Node": node.id, "X-Gorchester-Container": container_id, "Cache-Control": "no-cache"}
    return StreamingResponse(relay(source), media_type="text/plain; charset=utf-8", headers=headers)
