# The one image for every Baton service (workers per queue, Flower): see docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PATH=/app/.venv/bin:$PATH

RUN pip install --no-cache-dir uv && useradd --create-home --uid 10001 baton
WORKDIR /app

# Dependencies first, so code changes do not reinstall them.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project --no-cache

COPY README.md ./
COPY config ./config
COPY workflows ./workflows
COPY tasks ./tasks
COPY app ./app
COPY examples ./examples
RUN uv sync --frozen --no-dev --no-cache

# Celery warns when run as root, and a worker has no reason to be root.
USER baton
CMD ["celery", "-A", "app.worker:celery_app", "worker", "-E", "--loglevel", "INFO"]
