"""The django-lexoffice demo site (example project)."""
