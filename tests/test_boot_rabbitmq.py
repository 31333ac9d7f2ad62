"""RabbitMQ: the task queue is a quorum queue with a dead-letter queue."""

from __future__ import annotations

import httpx
import pytest

from harness.processes import (
    ServiceProcess,
)
from harness.services import (
    RABBITMQ_PASSWORD,
    RABBITMQ_USER,
    rabbitmq_api_url,
)
from tests.stack import (
    Stack,
    each,
)

pytestmark = pytest.mark.boot


# --------------------------------------------------------------------------------------
# RabbitMQ


@each(lambda v: v.broker == "rabbitmq")
def test_rabbitmq_task_queue_is_quorum_with_a_dead_letter_queue(
    stack: Stack, worker: ServiceProcess
) -> None:
    vhost = stack.backends.rabbitmq_vhost
    response = httpx.get(
        rabbitmq_api_url(f"queues/{vhost}"), auth=(RABBITMQ_USER, RABBITMQ_PASSWORD), timeout=15
    )
    assert response.status_code == 200, response.text
    queues = {q["name"]: q for q in response.json()}
    assert "celery" in queues and "celery.dead-letter" in queues, sorted(queues)
    celery_queue = queues["celery"]
    assert celery_queue.get("type") == "quorum", celery_queue
    arguments = celery_queue.get("arguments", {})
    assert arguments.get("x-delivery-limit") == 5, arguments  # BROKER_DELIVERY_LIMIT
    assert arguments.get("x-dead-letter-exchange") is not None, arguments
