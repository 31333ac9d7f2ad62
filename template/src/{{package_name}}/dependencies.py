"""Objects the lifespan creates once per process, handed to endpoints."""

from typing import Annotated

from fastapi import Depends, Request

from ._internal.results import ResultStore
from ._internal.submit import TaskSubmitter


# async: a plain def dependency would run in a worker thread on every request.
async def get_result_store(request: Request) -> ResultStore:
    store: ResultStore = request.app.state.result_store
    return store


async def get_submitter(request: Request) -> TaskSubmitter:
    submitter: TaskSubmitter = request.app.state.submitter
    return submitter


Store = Annotated[ResultStore, Depends(get_result_store)]
Submitter = Annotated[TaskSubmitter, Depends(get_submitter)]
