"""`POST /v1/tasks/{task}/exec` {"command": [...], "timeout": N}: run a command in a replica's running
container, through its node's agent (as `docker exec`, no shell added), and answer its exit code and
output (the last EXEC_OUTPUT_LIMIT bytes of stdout and stderr interleaved, as UTF-8 with invalid
bytes replaced). A command still running at its timeout answers `timed_out` with a null exit code;
it keeps running in the container (the engine cannot stop an exec).
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.body import read_mapping
from api.context import blocking, settings_of, store_of
from api.node_calls import calls_of, error_of, replica
from shared import node_requests as protocol
from shared.config import MAX_COMMAND_ITEMS, Argument
from shared.errors import Unavailable
from shared.node_requests import ExecRequest, OutputTail, Reply, ReplyKind, new_request_id


class ExecBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: list[Argument] = Field(
        min_length=1, max_length=MAX_COMMAND_ITEMS,
        description="the argv to run (no shell added), each item as a service's command items are bounded",
    )
    timeout: StrictInt = Field(
        protocol.DEFAULT_EXEC_TIMEOUT, ge=protocol.MIN_EXEC_TIMEOUT, le=protocol.MAX_EXEC_TIMEOUT,
        description="seconds the command may run",
    )


class ExecResult(BaseModel):
    exit_code: int | None = Field(description="null when the command was still running at its timeout")
    output: str = Field(description=f"the last {protocol.EXEC_OUTPUT_LIMIT} bytes of stdout and stderr, "
                        "interleaved, as UTF-8 (invalid bytes replaced)")
    truncated: bool = Field(description="output came before what `output` holds")
    timed_out: bool


async def exec_in_task(request: Request) -> JSONResponse:
    task_id = request.path_params["task"]
    body = ExecBody.model_validate(await read_mapping(request, "an exec request"))
    store, misses = store_of(request), settings_of(request).heartbeat_misses
    task = await blocking(lambda: replica(store, task_id, time.time(), misses))
    assert task.node is not None and task.container_id is not None
    call = await calls_of(request).call(task.node, ExecRequest(
        id=new_request_id(), task=task.id, gen=task.gen, incarnation=task.incarnation,
        container_id=task.container_id, command=body.command, timeout=body.timeout,
    ))
    output = OutputTail(protocol.EXEC_OUTPUT_LIMIT)
    ended: Reply | None = None
    try:
        async for reply in call.replies():
            if reply.kind is ReplyKind.DATA:
                output.add(reply.data)
            elif reply.kind is ReplyKind.ERROR:
                raise error_of(reply)
            else:
                ended = reply
    finally:
        await call.close()
    if ended is None:
        raise Unavailable(f"node {task.node} ended the exec without its result")
    result: dict[str, Any] = ExecResult(
        exit_code=ended.exit_code, output=output.value().decode(errors="replace"),
        truncated=ended.truncated or output.truncated, timed_out=ended.timed_out,
    ).model_dump()
    return JSONResponse(result)
