from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import AnyHttpUrl

from ..config import get_settings
from ..dependencies import Submitter
from ..models import TaskAccepted, TaskRequest
from ..tasks.webhooks import process_with_webhook
from ..webhook_security import ForbiddenWebhookURLError, check_url
from .tasks import queued

router = APIRouter(prefix="/api", tags=["webhooks"])


@router.post("/task-with-webhook", status_code=status.HTTP_202_ACCEPTED)
async def submit_with_webhook(
    request: TaskRequest,
    webhook_url: Annotated[AnyHttpUrl, Query(description="Where the signed result is POSTed")],
    submitter: Submitter,
) -> TaskAccepted:
    """Process the data, then POST the result to webhook_url, signed with WEBHOOK_SECRET."""
    url = str(webhook_url)
    if not get_settings().webhook_allow_private:
        try:
            await check_url(url)
        except ForbiddenWebhookURLError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    task_id = await submitter.submit(process_with_webhook.s(request.data, url))
    return queued(task_id, "Processing with webhook")
