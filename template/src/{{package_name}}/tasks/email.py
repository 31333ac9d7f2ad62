"""Sending email over SMTP, retrying transient failures only."""

import smtplib
import ssl
from email.message import EmailMessage
from typing import Any

from celery import Task

from ..celery_app import celery_app
from ..config import Settings, get_settings
from .backoff import retry_delay


def is_transient(exc: Exception) -> bool:
    """True for failures worth retrying: 4xx replies, dropped or refused connections."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(400 <= code < 500 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    return isinstance(exc, smtplib.SMTPServerDisconnected | ConnectionError | TimeoutError)


def build_message(
    settings: Settings, *, message_id: str, to: str, subject: str, body: str
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.email_from
    message["To"] = to
    message["Subject"] = subject
    # A stable id across retries lets receivers drop a duplicate of a redelivered task.
    message["Message-ID"] = message_id
    message.set_content(body)
    return message


def deliver(settings: Settings, message: EmailMessage) -> None:
    with smtplib.SMTP(
        settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_seconds
    ) as smtp:
        if settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.smtp_username and settings.smtp_password:
            smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
        smtp.send_message(message)


@celery_app.task(bind=True)
def send_email(self: Task, to: str, subject: str, body: str) -> dict[str, Any]:
    settings = get_settings()
    domain = str(settings.email_from).rpartition("@")[2]
    message_id = f"<{self.request.id}@{domain}>"
    message = build_message(settings, message_id=message_id, to=to, subject=subject, body=body)
    try:
        deliver(settings, message)
    except (smtplib.SMTPException, OSError) as exc:
        if not is_transient(exc):
            raise
        raise self.retry(
            exc=exc,
            countdown=retry_delay(settings.email_retry_backoff_seconds, self.request.retries),
            max_retries=settings.email_max_retries,
        ) from exc
    return {"recipient": to, "message_id": message_id}
