from fastapi import APIRouter, status

from ..dependencies import Submitter
from ..models import EmailRequest, TaskAccepted
from ..tasks.email import send_email
from .tasks import queued

router = APIRouter(prefix="/api", tags=["email"])


@router.post("/email", status_code=status.HTTP_202_ACCEPTED)
async def submit_email(request: EmailRequest, submitter: Submitter) -> TaskAccepted:
    task_id = await submitter.submit(send_email.s(str(request.to), request.subject, request.body))
    return queued(task_id, "Email")
