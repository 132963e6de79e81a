"""The app without its optional extras: run by tox's ``py312-django52-noextras`` environment,
which installs no Celery (skipped wherever Celery is installed)."""

from __future__ import annotations

import importlib
import importlib.util
import re

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("celery") is not None,
    reason="Celery is installed; tox -e py312-django52-noextras runs this",
)


def test_the_app_works_without_celery_and_the_tasks_say_what_to_install() -> None:
    for module in ("models", "admin", "views", "tokens", "client"):
        importlib.import_module(f"django_lexoffice.{module}")
    call_command("check")
    with pytest.raises(ImportError, match=re.escape('pip install "django-lexoffice[celery]"')):
        importlib.import_module("django_lexoffice.tasks")
