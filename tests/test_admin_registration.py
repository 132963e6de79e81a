"""How ``django_lexoffice.social_admin`` takes over social_django's ``UserSocialAuth`` admin."""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import pytest
from django.contrib import admin
from social_django.admin import UserSocialAuthOption
from social_django.models import UserSocialAuth

from django_lexoffice import social_admin


@pytest.fixture
def reimport() -> Iterator[None]:
    """Lets a test import ``social_admin`` again (as autodiscovery does); puts the module and
    ``UserSocialAuth``'s admin back afterwards, so other tests see the usual site."""
    names = dict(vars(social_admin))
    original = type(admin.site.get_model_admin(UserSocialAuth))
    yield
    vars(social_admin).update(names)
    if admin.site.is_registered(UserSocialAuth):
        admin.site.unregister(UserSocialAuth)
    admin.site.register(UserSocialAuth, original)


def registered_admin() -> admin.ModelAdmin:
    return admin.site.get_model_admin(UserSocialAuth)


def test_social_admin_registers_its_admin_when_another_app_unregistered_social_auths(
    reimport: None,
) -> None:
    # An app earlier in INSTALLED_APPS dropped social-auth's admin; importing ours must not
    # raise NotRegistered (that breaks autodiscovery, so the whole admin).
    admin.site.unregister(UserSocialAuth)
    importlib.reload(social_admin)
    assert type(registered_admin()) is social_admin.TokenFreeUserSocialAuthAdmin
    assert "extra_data" in (registered_admin().exclude or ())


def test_social_admin_replaces_social_auths_registered_admin(reimport: None) -> None:
    admin.site.unregister(UserSocialAuth)
    admin.site.register(UserSocialAuth, UserSocialAuthOption)
    importlib.reload(social_admin)
    assert type(registered_admin()) is social_admin.TokenFreeUserSocialAuthAdmin
