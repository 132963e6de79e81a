"""LexofficeConnection and its encrypted token field (SECURITY.md 11, 12)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import FieldError
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import F, Value
from django.utils import timezone

from django_lexoffice.exceptions import TokenDecryptionError, UnsafeTokenWriteError
from django_lexoffice.models import TOKEN_FIELDS, LexofficeConnection, LexofficeSubscription
from django_lexoffice.signals import connection_revoked

from .conftest import ACCESS_TOKEN, REFRESH_TOKEN, raw_token_columns

pytestmark = pytest.mark.django_db


def test_sec11_tokens_are_encrypted_in_the_raw_column(make_connection):
    connection = make_connection()
    access, refresh = raw_token_columns(connection.pk)
    assert ACCESS_TOKEN not in access and REFRESH_TOKEN not in refresh
    assert access.startswith("gAAAA") and refresh.startswith("gAAAA")  # Fernet tokens
    fresh = LexofficeConnection.objects.get(pk=connection.pk)
    assert fresh.access_token == ACCESS_TOKEN
    assert fresh.refresh_token == REFRESH_TOKEN


def test_sec11_wrong_key_raises_instead_of_returning_ciphertext(make_connection):
    connection = make_connection()
    with db_connection.cursor() as cursor:
        cursor.execute(
            "UPDATE django_lexoffice_lexofficeconnection SET access_token = %s WHERE id = %s",
            ["gAAAAABnot-a-valid-fernet-token-for-this-key==", connection.pk],
        )
    with pytest.raises(TokenDecryptionError) as excinfo:
        LexofficeConnection.objects.get(pk=connection.pk)
    assert "FIELD_ENCRYPTION_KEY" in str(excinfo.value)
    assert "gAAAA" not in str(excinfo.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"access_token": Value("x")},
        {"refresh_token": F("access_token")},
        {"access_token": "plain"},
    ],
    ids=["value-expression", "f-expression", "plain-value"],
)
def test_sec11_update_of_tokens_is_refused_before_sql(make_connection, kwargs):
    connection = make_connection()
    with pytest.raises(UnsafeTokenWriteError):
        LexofficeConnection.objects.filter(pk=connection.pk).update(**kwargs)
    # The transaction is still usable and the row unchanged.
    assert LexofficeConnection.objects.get(pk=connection.pk).access_token == ACCESS_TOKEN


def test_sec11_bulk_update_of_tokens_is_refused(make_connection):
    connection = make_connection()
    connection.access_token = "new"
    with pytest.raises(UnsafeTokenWriteError):
        LexofficeConnection.objects.bulk_update([connection], ["access_token"])
    assert LexofficeConnection.objects.get(pk=connection.pk).access_token == ACCESS_TOKEN


def test_update_of_other_fields_still_works(make_connection):
    connection = make_connection()
    assert LexofficeConnection.objects.filter(pk=connection.pk).update(company_name="Neu") == 1
    connection.company_name = "Wieder neu"
    LexofficeConnection.objects.bulk_update([connection], ["company_name"])
    assert LexofficeConnection.objects.get(pk=connection.pk).company_name == "Wieder neu"


@pytest.mark.parametrize(
    "write",
    [
        lambda qs, c: qs.filter(pk=c.pk).update(access_token=F("refresh_token")),
        lambda qs, c: qs.filter(pk=c.pk).update(refresh_token=Value("x")),
        lambda qs, c: qs.bulk_update([c], ["access_token"]),
    ],
    ids=["update-F", "update-Value", "bulk_update"],
)
@pytest.mark.parametrize("manager", ["_base_manager", "_default_manager", "objects"])
def test_token_writes_are_refused_before_sql_and_the_transaction_stays_usable(
    make_connection, manager, write
):
    connection = make_connection()
    with transaction.atomic():
        with pytest.raises(UnsafeTokenWriteError):
            write(getattr(LexofficeConnection, manager), connection)
        # No TransactionManagementError: nothing was sent, the transaction goes on.
        LexofficeConnection.objects.filter(pk=connection.pk).update(company_name="Weiter")
    connection = LexofficeConnection.objects.get(pk=connection.pk)
    assert (connection.company_name, connection.access_token) == ("Weiter", ACCESS_TOKEN)


def test_override_settings_changes_the_key_at_once(make_connection, settings):
    from cryptography.fernet import Fernet

    connection = make_connection()
    old_key = settings.FIELD_ENCRYPTION_KEY
    settings.FIELD_ENCRYPTION_KEY = Fernet.generate_key().decode()
    with pytest.raises(TokenDecryptionError):
        LexofficeConnection.objects.get(pk=connection.pk)
    settings.FIELD_ENCRYPTION_KEY = [settings.FIELD_ENCRYPTION_KEY, old_key]
    assert LexofficeConnection.objects.get(pk=connection.pk).refresh_token == REFRESH_TOKEN


@pytest.mark.parametrize("keys", [None, "", [], ["not-a-key"], [42]])
def test_using_a_token_with_a_missing_or_invalid_key_names_the_setting(settings, keys):
    from django_lexoffice.exceptions import LexofficeConfigurationError
    from django_lexoffice.fields import encrypt

    settings.FIELD_ENCRYPTION_KEY = keys
    with pytest.raises(LexofficeConfigurationError, match="FIELD_ENCRYPTION_KEY is not"):
        encrypt("x")


def test_an_empty_token_is_stored_as_an_empty_column(make_connection):
    connection = make_connection(access_token="")
    access, refresh = raw_token_columns(connection.pk)
    assert access == "" and refresh.startswith("gAAAA")
    assert LexofficeConnection.objects.get(pk=connection.pk).access_token == ""


def test_field_refuses_expressions_even_through_another_manager(make_connection):
    connection = make_connection()
    field = LexofficeConnection._meta.get_field("access_token")
    with pytest.raises(UnsafeTokenWriteError):
        field.get_db_prep_save(Value("x"), db_connection)
    assert connection.pk


def test_filtering_on_a_token_is_an_error(make_connection):
    make_connection()
    with pytest.raises(FieldError):
        list(LexofficeConnection.objects.filter(access_token=ACCESS_TOKEN))
    assert LexofficeConnection.objects.filter(access_token__isnull=False).count() == 1


def test_sec12_str_and_repr_show_no_token(make_connection):
    connection = make_connection()
    for text in (str(connection), repr(connection)):
        assert ACCESS_TOKEN[:16] not in text and REFRESH_TOKEN[:16] not in text
    assert "Testfirma GmbH" in str(connection)
    assert "organization_id='aa93e8a8" in repr(connection)


def test_unique_per_user_and_organization(make_connection):
    from django.db import IntegrityError, transaction

    make_connection()
    with pytest.raises(IntegrityError), transaction.atomic():
        make_connection()


def test_active_and_expiring_querysets(make_connection, django_user_model):
    now = timezone.now()
    soon = make_connection(expires_at=now + timedelta(seconds=60))
    later = make_connection(organization_id="later", expires_at=now + timedelta(hours=3))
    unknown = make_connection(organization_id="unknown", expires_at=None)
    revoked = make_connection(
        organization_id="revoked",
        status=LexofficeConnection.Status.REVOKED,
        expires_at=now - timedelta(seconds=1),
    )
    backing_off = make_connection(
        organization_id="backoff",
        expires_at=now,
        next_attempt_at=now + timedelta(minutes=5),
    )
    assert set(LexofficeConnection.objects.active()) == {soon, later, unknown, backing_off}
    assert set(LexofficeConnection.objects.expiring(300)) == {soon, unknown, revoked, backing_off}
    assert set(LexofficeConnection.objects.expiring(timedelta(hours=4))) == {
        soon,
        later,
        unknown,
        revoked,
        backing_off,
    }
    assert set(LexofficeConnection.objects.due_for_refresh(300)) == {soon, unknown}
    assert later.expires_within(4 * 3600) and not later.expires_within(60)
    assert unknown.expires_within(0)


def test_sec11_dumpdata_holds_ciphertext_and_loaddata_round_trips(make_connection, tmp_path):
    from django.core.management import call_command

    connection = make_connection()
    dump = tmp_path / "dump.json"
    call_command("dumpdata", "django_lexoffice", output=str(dump))
    text = dump.read_text()
    assert ACCESS_TOKEN[:16] not in text and REFRESH_TOKEN[:16] not in text
    assert '"refresh_token": "fernet:gAAAA' in text
    LexofficeConnection.objects.all()._raw_delete(LexofficeConnection.objects.db)
    call_command("loaddata", str(dump), verbosity=0)
    loaded = LexofficeConnection.objects.get(pk=connection.pk)
    assert (loaded.access_token, loaded.refresh_token) == (ACCESS_TOKEN, REFRESH_TOKEN)


def test_loaddata_of_plaintext_and_empty_tokens(make_connection):
    from django.core import serializers

    connection = make_connection(access_token="")
    data = serializers.serialize("python", [connection])
    data[0]["fields"]["refresh_token"] = "plain-refresh"  # a hand-written fixture
    for obj in serializers.deserialize("python", data):
        obj.save()
    loaded = LexofficeConnection.objects.get(pk=connection.pk)
    assert (loaded.access_token, loaded.refresh_token) == ("", "plain-refresh")


def test_loaddata_with_a_foreign_key_fails_loudly(make_connection):
    from cryptography.fernet import Fernet
    from django.core import serializers

    connection = make_connection()
    data = serializers.serialize("python", [connection])
    foreign = Fernet(Fernet.generate_key()).encrypt(b"x").decode()
    data[0]["fields"]["refresh_token"] = "fernet:" + foreign
    with pytest.raises(serializers.base.DeserializationError, match="Cannot decrypt"):
        list(serializers.deserialize("python", data))


def test_a_user_is_deleted_with_connections_the_key_cannot_decrypt(
    make_connection, user, settings, capture_signal
):
    """GDPR erasure does not depend on FIELD_ENCRYPTION_KEY: the base manager that collects
    the user's connections decrypts nothing, and the grant it cannot read is not revoked."""
    revoked = capture_signal(connection_revoked)
    connection = make_connection()
    settings.FIELD_ENCRYPTION_KEY = Fernet.generate_key().decode()
    user.delete()
    assert not LexofficeConnection.objects.filter(pk=connection.pk).exists()
    (sent,) = revoked
    assert sent["deleted"] is True and sent["revoked_at_lexware"] is False


def test_rows_reached_through_a_relation_load_their_tokens_when_read(make_connection):
    connection = make_connection()
    subscription = LexofficeSubscription.objects.create(
        connection=connection, event_type="token.revoked", callback_url="https://x.example/"
    )
    related = LexofficeSubscription.objects.get(pk=subscription.pk).connection
    assert related.get_deferred_fields() == TOKEN_FIELDS  # decrypted on first read only
    assert (related.access_token, related.refresh_token) == (ACCESS_TOKEN, REFRESH_TOKEN)
    related.company_name = "Neu"
    related.save()
    connection.refresh_from_db()
    assert (connection.company_name, connection.refresh_token) == ("Neu", REFRESH_TOKEN)
