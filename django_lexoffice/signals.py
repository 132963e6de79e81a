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
#: Arguments: ``connection``, ``revoked_at_lexware`` (``False`` when Lexware could not be reached),
#: ``ended_in_lexoffice`` (``True`` when the user or Lexware ended it inside lexoffice and a
#: ``token.revoked`` webhook told us; ``False`` when this site revoked it).
connection_revoked = Signal()

#: The connection's authorization ends soon (Lexware's two-year lifetime,
#: ``LEXOFFICE_AUTHORIZATION_LIFETIME``): ask the user to connect again. Sent once per
#: authorization, from 30 days before, by ``refresh_lexoffice_tokens`` and its Celery task.
#: Arguments: ``connection``, ``ends_at`` (an aware datetime).
reauthorization_due = Signal()

#: Lexware delivered a verified, new webhook event (after its built-in effect, on commit).
#: Sender: ``LexofficeConnection``. Arguments: ``event_type``, ``resource_id``,
#: ``organization_id``, ``event_date`` (an aware datetime) and ``connections`` (that
#: organization's active connections, a QuerySet). Receivers run while Lexware waits (5 s):
#: keep them fast, or queue the work. No resource data comes with the event: fetch it with
#: :class:`~django_lexoffice.client.LexofficeClient`.
event_received = Signal()
