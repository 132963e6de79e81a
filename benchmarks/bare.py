"""The baseline: the same lexoffice protocol with social-auth's own storage.

``BareLexofficeOAuth2`` speaks to Lexware exactly like ``LexofficeOAuth2`` (state first, PKCE,
HTTP Basic, ``/v1/profile``), but keeps what plain social-auth keeps: the tokens in plaintext in
``UserSocialAuth.extra_data``, social-core's default pipeline (no ``save_connection`` step, no
scrub), and social-core's own refresh (``UserSocialAuth.refresh_token(strategy)``, which sends
the client secret in the request body).
"""

from __future__ import annotations

from typing import Any

from social_core.backends.oauth import BaseOAuth2PKCE

from django_lexoffice.backends import LexofficeOAuth2

BARE_BACKEND_NAME = "lexoffice-bare"


class BareLexofficeOAuth2(LexofficeOAuth2):
    """lexoffice through plain social-auth: tokens in ``extra_data``, the default pipeline."""

    name = BARE_BACKEND_NAME
    EXTRA_DATA = [
        *LexofficeOAuth2.EXTRA_DATA,
        ("refresh_token", "refresh_token"),
        ("expires_in", "expires"),
    ]

    def extra_data(
        self,
        user: Any,
        uid: str,
        response: dict[str, Any],
        details: dict[str, Any],
        pipeline_kwargs: dict[str, Any],
    ) -> dict[str, Any]:
        # social-core's own: access and refresh token stored as they came.
        data: dict[str, Any] = BaseOAuth2PKCE.extra_data(
            self, user, uid, response, details, pipeline_kwargs
        )
        return data

    def pipeline(self, pipeline: Any, pipeline_index: int = 0, *args: Any, **kwargs: Any) -> Any:
        # social-core's own: whatever the strategy gives (its DEFAULT_AUTH_PIPELINE here).
        return BaseOAuth2PKCE.pipeline(self, pipeline, pipeline_index, *args, **kwargs)
