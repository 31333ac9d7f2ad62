"""Celery tasks, one module per feature: your tasks go here.

To add a task: a function decorated with `@celery_app.task` here, or in a new module of
`tasks/` (the worker imports every one); an endpoint submits it with `Submitter`.
"""
