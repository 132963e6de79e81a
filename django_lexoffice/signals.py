"""Signals sent by django-lexoffice.

Receivers must accept ``**kwargs``: more arguments may be added in later releases.
Every signal is sent with ``sender=LexofficeConnection`` and ``connection=`` the
connection concerned; none of them carries a token.
"""

from django.dispatch import Signal

#: A user connected a lexoffice company for the first time (after the row was saved).
#: Arguments: ``connection``, ``user``, ``request`` (may be ``None``).
connection_created = Signal()

#: The tokens of a connection were refreshed. Arguments: ``connection``.
tokens_refreshed = Signal()

#: Lexware no longer accepts the grant; the user must connect again.
#: Arguments: ``connection``, ``reason`` (a short text, no token).
reauthorization_required = Signal()

#: The connection was revoked and its tokens cleared.
#: Arguments: ``connection``, ``revoked_at_lexware`` (``False`` when Lexware could not be reached).
connection_revoked = Signal()
