"""URLs of the demo site."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import URLPattern, URLResolver, include, path
from django.utils.translation import gettext_lazy as _

from . import views

admin.site.site_header = _("django-lexoffice demo")
admin.site.site_title = _("django-lexoffice demo")

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.home, name="home"),
    path("favicon.ico", views.favicon, name="favicon"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("lexoffice/", include("django_lexoffice.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
]

if settings.DEMO_FAKE_LEXWARE:
    # The built-in fake Lexware stands in for app.lexware.de and api.lexware.io.
    urlpatterns += [
        # Where the real Lexware has its sign-in page (the error pages link there).
        path("fake-lexware/", views.fake_lexware, name="fake_lexware"),
        path("fake-lexware/", include("django_lexoffice.testing.urls")),
    ]
