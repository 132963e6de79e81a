"""URLs: ``path("lexoffice/", include("django_lexoffice.urls"))``."""

from django.urls import path

from . import views, webhooks

app_name = "lexoffice"

urlpatterns = [
    path("login/", views.login, name="login"),
    path("callback/", views.callback, name="callback"),
    path("connections/", views.connections, name="connections"),
    path("connections/<int:pk>/disconnect/", views.disconnect, name="disconnect"),
    path("connections/<int:pk>/remove/", views.remove, name="remove"),
    path("webhook/", webhooks.webhook, name="webhook"),
]
