"""Migration 0002 and the authorization fields the login sets (issue 15)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from django_lexoffice.models import LexofficeConnection

from .test_flow import connect


@pytest.mark.django_db(transaction=True)
def test_migration_backfills_authorized_at_with_created_at(django_user_model):
    executor = MigrationExecutor(db_connection)
    executor.migrate([("django_lexoffice", "0001_initial")])
    old_apps = executor.loader.project_state([("django_lexoffice", "0001_initial")]).apps
    created = timezone.now() - timedelta(days=400)
    user = old_apps.get_model("auth", "User").objects.create(username="old")
    row = old_apps.get_model("django_lexoffice", "LexofficeConnection").objects.create(
        user=user, organization_id="org"
    )
    old_apps.get_model("django_lexoffice", "LexofficeConnection").objects.filter(pk=row.pk).update(
        created_at=created
    )
    executor = MigrationExecutor(db_connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    migrated = LexofficeConnection.objects.get(pk=row.pk)
    assert migrated.authorized_at == created
    assert migrated.ended_in_lexoffice is False and migrated.reauthorization_due_sent_for is None


@pytest.mark.django_db
def test_every_login_sets_authorized_at_and_a_reconnect_revives_an_ended_connection(
    client, fake_lexware
):
    connect(client, fake_lexware)
    connection = LexofficeConnection.objects.get()
    first = connection.authorized_at
    first_connection_id = connection.connection_id
    LexofficeConnection.objects.filter(pk=connection.pk).update(
        status="revoked",
        ended_in_lexoffice=True,
        authorized_at=first - timedelta(days=1),
        reauthorization_due_sent_for=first - timedelta(days=1),
    )
    connect(client, fake_lexware)
    connection.refresh_from_db()
    assert connection.status == "active" and not connection.ended_in_lexoffice
    assert connection.authorized_at >= first
    assert connection.reauthorization_due_sent_for is None
    assert connection.connection_id != first_connection_id  # a new grant, a new connectionId
