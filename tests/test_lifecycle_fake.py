"""Token lifecycle against the strict fake Lexware: rotation and lost responses."""

from __future__ import annotations

import pytest

from django_lexoffice import tokens
from django_lexoffice.exceptions import ReauthorizationRequired, TransientRefreshError
from django_lexoffice.models import LexofficeConnection

pytestmark = pytest.mark.django_db


@pytest.fixture
def connection(fake_lexware, user):
    """A connection holding a live grant, due for a refresh (expiring in 10 s)."""
    return fake_lexware.connect(user, expires_in=10)


def test_sec14_refresh_rotates_and_the_old_refresh_token_dies(fake_lexware, connection):
    old_refresh = connection.refresh_token
    tokens.refresh(connection)
    assert not fake_lexware.is_refresh_token_valid(old_refresh)
    assert fake_lexware.is_refresh_token_valid(connection.refresh_token)
    assert (
        LexofficeConnection.objects.get(pk=connection.pk).refresh_token == connection.refresh_token
    )
    tokens.refresh(connection, force=True)
    assert fake_lexware.count("refresh") == 2


def test_rotated_but_lost_response_ends_in_reauthorization_never_a_crash(fake_lexware, connection):
    old_refresh = connection.refresh_token
    fake_lexware.inject("refresh", "lost_response")
    with pytest.raises(TransientRefreshError):
        tokens.refresh(connection)
    row = LexofficeConnection.objects.get(pk=connection.pk)
    assert row.refresh_token == old_refresh and row.status == "active"
    assert not fake_lexware.is_refresh_token_valid(old_refresh)  # Lexware did rotate
    with pytest.raises(ReauthorizationRequired):
        tokens.refresh(row, force=True)
    row.refresh_from_db()
    assert row.status == "reauthorization_required" and "invalid_grant" in row.last_error


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("server_error", {"status": 503}),
        ("non_json", {}),
        ("rate_limit", {}),
        ("rate_limit_500", {}),
        ("connection_reset", {}),
    ],
)
def test_transient_faults_keep_a_working_connection(fake_lexware, connection, kind, options):
    fake_lexware.inject("refresh", kind, **options)
    with pytest.raises(TransientRefreshError):
        tokens.refresh(connection)
    row = LexofficeConnection.objects.get(pk=connection.pk)
    assert fake_lexware.is_refresh_token_valid(row.refresh_token)
    assert tokens.refresh(row, force=True).refreshed  # the next run succeeds


def test_user_revoked_in_lexware(fake_lexware, connection):
    fake_lexware.revoke_connection(connection.refresh_token)
    with pytest.raises(ReauthorizationRequired):
        tokens.refresh(connection)


def test_revoke_kills_the_grant_at_the_fake(fake_lexware, connection):
    refresh_token = connection.refresh_token
    assert tokens.revoke(connection) is True
    assert not fake_lexware.is_refresh_token_valid(refresh_token)
    assert fake_lexware.count("revoke") == 1
