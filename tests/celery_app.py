"""The Celery app the worker-based tests start (``celery -A tests.celery_app worker``)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings_worker")

app = Celery("django_lexoffice_tests")
app.conf.broker_url = os.environ.get("LEXOFFICE_CELERY_BROKER", "redis://127.0.0.1:6379/14")
app.conf.task_default_queue = os.environ.get("LEXOFFICE_CELERY_QUEUE", "lexoffice-tests")
app.conf.worker_hijack_root_logger = False
app.autodiscover_tasks(["django_lexoffice"])


@app.on_after_finalize.connect
def _setup_django(**kwargs):
    import django

    django.setup()
