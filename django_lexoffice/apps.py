from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class LexofficeConfig(AppConfig):
    name = "django_lexoffice"
    label = "django_lexoffice"
    verbose_name = _("lexoffice")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, receivers  # noqa: F401  (registers checks and signal receivers)
