"""System checks for the webhook settings (lexoffice.E008, E009, W107, W108)."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from django_lexoffice.checks import check_deploy, check_settings
from django_lexoffice.conf import LEXWARE_WEBHOOK_PUBLIC_KEY

from .webhook_helpers import private_key, public_pem

REDIRECT = "https://example.com/lexoffice/callback/"


def ids(messages):
    return sorted(message.id for message in messages)


@pytest.mark.parametrize(
    "value",
    [
        "not a key",
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
        [LEXWARE_WEBHOOK_PUBLIC_KEY, "garbage"],
    ],
)
def test_e008_webhook_key_does_not_parse(value):
    with override_settings(LEXOFFICE_WEBHOOK_PUBLIC_KEY=value):
        messages = check_settings()
    assert ids(messages) == ["lexoffice.E008"]
    assert "BEGIN PUBLIC KEY" in messages[0].hint


def test_e008_not_for_good_keys_or_a_list_of_them():
    keys = [public_pem(private_key(2048)), LEXWARE_WEBHOOK_PUBLIC_KEY.encode("ascii")]
    with override_settings(LEXOFFICE_WEBHOOK_PUBLIC_KEY=keys):
        assert check_settings() == []


def test_e008_an_ec_key_is_not_an_rsa_key():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with override_settings(LEXOFFICE_WEBHOOK_PUBLIC_KEY=pem):
        assert ids(check_settings()) == ["lexoffice.E008"]


@override_settings(
    LEXOFFICE_WEBHOOK_URL="https://example.com/lexoffice/webhook/",
    LEXOFFICE_WEBHOOK_EVENTS=["token.revoked", "Invoice.Created", "invoices.created"],
)
def test_e009_unknown_event_types():
    messages = check_settings()
    assert ids(messages) == ["lexoffice.E009"]
    assert "'Invoice.Created', 'invoices.created'" in messages[0].msg


@override_settings(
    LEXOFFICE_WEBHOOK_URL="https://example.com/lexoffice/webhook/",
    LEXOFFICE_WEBHOOK_EVENTS="token.revoked invoice.created contact.changed payment.changed",
)
def test_every_documented_event_type_passes():
    assert check_settings() == []


@override_settings(LEXOFFICE_WEBHOOK_EVENTS=["token.revoked", "invoice.created"])
def test_w108_events_configured_without_url():
    messages = check_settings()
    assert ids(messages) == ["lexoffice.W108"]
    assert "LEXOFFICE_WEBHOOK_URL" in messages[0].hint


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/lexoffice/webhook/",
        "https://example.com/lexoffice/webhook/?token=secret",
        "https://user:pw@example.com/lexoffice/webhook/",
        "https://example.com/lexoffice/hooks/",
    ],
)
def test_w107_webhook_url_not_https_or_not_our_path(url):
    with override_settings(LEXOFFICE_REDIRECT_URI=REDIRECT, LEXOFFICE_WEBHOOK_URL=url):
        assert ids(check_deploy()) == ["lexoffice.W107"]


@override_settings(
    LEXOFFICE_REDIRECT_URI=REDIRECT, LEXOFFICE_WEBHOOK_URL="https://example.com/lexoffice/webhook/"
)
def test_w107_not_for_the_right_url():
    assert check_deploy() == []


@override_settings(LEXOFFICE_WEBHOOK_PUBLIC_KEY="garbage")
def test_check_command_fails_on_a_bad_webhook_key():
    with pytest.raises(SystemCheckError, match=r"lexoffice\.E008"):
        call_command("check")


@override_settings(LEXOFFICE_WEBHOOK_USE_CELERY=True)
def test_e010_celery_wanted_but_not_installed():
    import importlib.util
    from unittest import mock

    installed = importlib.util.find_spec("celery") is not None
    assert ids(check_settings()) == ([] if installed else ["lexoffice.E010"])
    with mock.patch("importlib.util.find_spec", return_value=None):
        messages = check_settings()
    assert ids(messages) == ["lexoffice.E010"]
    assert "django-lexoffice[celery]" in messages[0].hint
