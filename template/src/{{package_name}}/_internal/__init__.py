"""The service's machinery, which you normally don't edit: publishing task messages, the
result stores, request limits and checks, the worker's guards and the transport fixes.

Your code goes in `routers/`, `tasks/`, `models.py` and `config.py`; the README's "Where your
code goes" says how.
"""
