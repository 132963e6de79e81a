"""DOT's endpoints at Lexware's paths, so ``LEXOFFICE_AUTH_BASE_URL`` can point here."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path
from oauth2_provider import views as oauth2_views

from . import views
from .constants import READY_PATH

urlpatterns = [
    path("oauth2/authorize", oauth2_views.AuthorizationView.as_view(), name="authorize"),
    path("oauth2/token", oauth2_views.TokenView.as_view(), name="token"),
    path("oauth2/revoke", oauth2_views.RevokeTokenView.as_view(), name="revoke"),
    path("v1/profile", views.profile, name="profile"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path(READY_PATH.lstrip("/"), views.ready, name="ready"),
]
