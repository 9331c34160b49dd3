"""The worker entry point: ``celery -A app.worker:celery_app worker -Q <queue>``."""

from app.celery_app import create_app
from config import get_settings
from tasks.worker import install_worker

celery_app, runtime = create_app(get_settings())
install_worker(runtime)
