"""Prepare the DOT server's database: ``python -m tests.dot_server.bootstrap``.

Migrates, then creates (or updates) the resource owner and the confidential OAuth client
from the environment: ``DOT_USERNAME``, ``DOT_PASSWORD``, ``DOT_CLIENT_ID``,
``DOT_CLIENT_SECRET`` and ``DOT_REDIRECT_URI`` (registered as the one exact redirect URI).
"""

from __future__ import annotations

import os

import django

from .constants import USER_EMAIL


def main() -> None:
    """Migrate and create the user and the application."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.dot_server.settings")
    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from oauth2_provider.models import get_application_model

    call_command("migrate", interactive=False, verbosity=0)
    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(
        username=os.environ["DOT_USERNAME"],
        defaults={"email": USER_EMAIL, "first_name": "Erika", "last_name": "Musterfrau"},
    )
    user.set_password(os.environ["DOT_PASSWORD"])
    user.save()
    application_model = get_application_model()
    application_model.objects.filter(client_id=os.environ["DOT_CLIENT_ID"]).delete()
    application_model.objects.create(
        name="django-lexoffice cross-check",
        user=user,
        client_id=os.environ["DOT_CLIENT_ID"],
        client_secret=os.environ["DOT_CLIENT_SECRET"],  # stored hashed by DOT
        client_type=application_model.CLIENT_CONFIDENTIAL,
        authorization_grant_type=application_model.GRANT_AUTHORIZATION_CODE,
        redirect_uris=os.environ["DOT_REDIRECT_URI"],
        skip_authorization=False,
    )


if __name__ == "__main__":
    main()
