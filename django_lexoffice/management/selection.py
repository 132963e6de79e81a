"""The options both batch commands share: which connections a run visits (``--user``,
``--organization``). How a connection is named in their output is
:func:`~django_lexoffice.batch.connection_label`."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError, CommandParser


def add_selection_arguments(parser: CommandParser) -> None:
    """``--user USERNAME`` and ``--organization ORGANIZATION_ID``."""
    parser.add_argument("--user", metavar="USERNAME", help="Only this user's connections.")
    parser.add_argument(
        "--organization", metavar="ORGANIZATION_ID", help="Only this lexoffice organization."
    )


def get_user(username: str | None) -> Any:
    """The user named by ``--user`` (``None`` without it); a clear ``CommandError`` if none."""
    if not username:
        return None
    user_model = get_user_model()
    try:
        return user_model._default_manager.get_by_natural_key(username)
    except user_model.DoesNotExist:
        raise CommandError(f"No user with username {username!r}.") from None
