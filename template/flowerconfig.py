"""Flower's configuration: `celery flower` reads this file from the working directory.

Flower's API can revoke tasks and shut workers down, so it must never run without
credentials: give them as FLOWER_BASIC_AUTH=user:password (or --basic-auth).
"""

from tornado.options import options

if not options.basic_auth:
    raise SystemExit("Flower needs credentials: set FLOWER_BASIC_AUTH=user:password")
