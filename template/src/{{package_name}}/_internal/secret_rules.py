"""Secrets that must be real: empty values and the placeholders of examples are refused,
so that no copied example file starts a service whose secrets anyone could guess."""

import re
from urllib.parse import unquote, urlsplit

HOW_TO_MAKE_ONE = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'

# Compared in lower case with everything but letters removed: "Change-Me-123" is "changeme".
PLACEHOLDERS = frozenset(
    {
        "admin",
        "changeit",
        "changeme",
        "default",
        "example",
        "guest",
        "letmein",
        "passwd",
        "password",
        "placeholder",
        "qwerty",
        "root",
        "secret",
        "test",
        "todo",
    }
)
PLACEHOLDER_PREFIXES = ("changeme", "changethis", "replaceme", "yoursecret", "yourpassword")


def secret_problem(value: str, *, min_length: int = 1) -> str | None:
    """Why `value` cannot serve as a secret (to follow its setting's name), or None."""
    if not value.strip():
        return "is empty"
    letters = re.sub(r"[^a-z]", "", value.lower())
    if letters in PLACEHOLDERS or letters.startswith(PLACEHOLDER_PREFIXES):
        return f"is a placeholder; make a real secret with: {HOW_TO_MAKE_ONE}"
    if len(value) < min_length:
        return f"must be at least {min_length} characters; make one with: {HOW_TO_MAKE_ONE}"
    return None


# Hosts of this machine, where local development may use the default accounts of servers.
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def url_password_problem(url: str) -> str | None:
    """Why the password in a connection URL cannot serve, or None: a URL to another host
    than this machine (a Compose service, a server) must not carry a placeholder."""
    parts = urlsplit(url)
    if parts.password is None or parts.hostname in LOCAL_HOSTS:
        return None
    problem = secret_problem(unquote(parts.password))
    return None if problem is None else f"has a password that {problem}"
