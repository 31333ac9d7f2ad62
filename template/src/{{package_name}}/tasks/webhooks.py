"""Processing that reports its result to a caller's webhook, signed."""

import json
from typing import Any

import httpx
from celery import Task

from ..celery_app import celery_app
from ..config import get_settings
from ..webhook_security import SIGNATURE_HEADER, check_url_sync, sign
from .backoff import retry_delay
from .processing import summarize


class WebhookRejectedError(Exception):
    """The receiver answered with a 4xx status: retrying would not help."""


@celery_app.task(bind=True)
def process_with_webhook(self: Task, data: dict[str, Any], webhook_url: str) -> dict[str, Any]:
    settings = get_settings()
    result = summarize(data)
    if not settings.webhook_allow_private:
        check_url_sync(webhook_url)
    body = json.dumps({"task_id": self.request.id, "result": result}).encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(body, settings.webhook_secret.get_secret_value()),
    }
    try:
        # No redirects: a redirect could point the request at an internal address.
        response = httpx.post(
            webhook_url,
            content=body,
            headers=headers,
            timeout=settings.webhook_timeout_seconds,
            follow_redirects=False,
        )
    except httpx.TransportError as exc:
        raise self.retry(
            exc=exc,
            countdown=retry_delay(settings.webhook_retry_backoff_seconds, self.request.retries),
            max_retries=settings.webhook_max_retries,
        ) from exc
    if response.status_code >= 500 or response.status_code == 429:
        raise self.retry(
            exc=httpx.HTTPStatusError(
                f"webhook answered {response.status_code}",
                request=response.request,
                response=response,
            ),
            countdown=retry_delay(settings.webhook_retry_backoff_seconds, self.request.retries),
            max_retries=settings.webhook_max_retries,
        )
    if response.status_code >= 400:
        raise WebhookRejectedError(f"webhook answered {response.status_code}")
    return {"result": result, "webhook": {"url": webhook_url, "status_code": response.status_code}}
