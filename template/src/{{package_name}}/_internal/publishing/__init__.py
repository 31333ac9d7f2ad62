"""Publishing tasks to the broker from the API, without blocking its event loop."""

from .base import BrokerUnavailableError, CeleryPublisher, Publisher
from .factory import create_publisher

__all__ = ["BrokerUnavailableError", "CeleryPublisher", "Publisher", "create_publisher"]
