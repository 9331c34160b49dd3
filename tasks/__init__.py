"""The distributed runtime: every step and tool a Celery task, run state and events in Redis."""
