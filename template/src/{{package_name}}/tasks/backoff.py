import random

MAX_DELAY_SECONDS = 600.0


def retry_delay(base_seconds: float, retries: int) -> float:
    """Exponential backoff with jitter: base * 2**retries, capped, randomised by up to half.

    The jitter keeps many tasks that failed together from retrying together.
    """
    delay = min(MAX_DELAY_SECONDS, base_seconds * 2**retries)
    return random.uniform(delay / 2, delay)  # noqa: S311 - not for security
