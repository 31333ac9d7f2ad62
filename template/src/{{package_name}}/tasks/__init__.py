"""Celery tasks, one module per feature."""
