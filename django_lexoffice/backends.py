"""The social-auth backend for lexoffice (Lexware Office): OAuth 2.1 code flow + PKCE S256.

Only what Lexware needs differs from social-core's ``BaseOAuth2PKCE``:

* hosts come from settings (``LEXOFFICE_SANDBOX``, ``LEXOFFICE_*_BASE_URL``);
* the client authenticates with HTTP Basic (a public client: ``client_id`` in the
  body, no secret); S256 is the only challenge method;
* ``state`` is checked *before* ``error`` and ``code`` (social-core checks it after
  ``error``, which leaves a denied flow's state valid);
* ``REDIRECT_STATE = False``: Lexware compares ``redirect_uri`` exactly;
* the identity comes from ``GET {api}/v1/profile`` (uid = ``created.userId``);
* tokens never go to ``UserSocialAuth.extra_data``: the pipeline step
  :func:`django_lexoffice.pipeline.save_connection` stores them encrypted.
"""

from __future__ import annotations

import logging
import re
from typing import Any, cast
from urllib.parse import quote, urlencode

from django.utils.module_loading import import_string
from django.views.decorators.debug import sensitive_variables
from social_core.backends.oauth import BaseOAuth2PKCE
from social_core.exceptions import AuthConfigurationError, AuthInputError, AuthResponseError
from social_core.pipeline import DEFAULT_AUTH_PIPELINE
from social_core.utils import handle_http_errors

from .conf import settings as lexoffice_settings
from .http import require_secure_url, revoke_token, take_slots
from .token_response import is_access_token, is_refresh_token, parse_token_response

logger = logging.getLogger(__name__)

#: Our step, appended to social-auth's default pipeline when the site sets none.
SAVE_CONNECTION_STEP = "django_lexoffice.pipeline.save_connection"
#: social-core's ``user_details`` overwrites a connecting user's names; ours only fills blanks.
DEFAULT_PIPELINE: tuple[str, ...] = (
    *(
        "django_lexoffice.pipeline.fill_user_details"
        if step == "social_core.pipeline.user.user_details"
        else step
        for step in DEFAULT_AUTH_PIPELINE
    ),
    SAVE_CONNECTION_STEP,
)

# Lexware's allowed characters for connection_name (LEXOFFICE.md): letters incl.
# umlauts and ß, digits, whitespace and / ? . - { } " _ \ : = , ( )
_CONNECTION_NAME_FORBIDDEN = re.compile(r'[^A-Za-z0-9äöüÄÖÜß\s/?.\-{}"_\\:=,()]')
_DOTTED_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
CONNECTION_NAME_MAX_LENGTH = 100
#: Keys that must never land in ``UserSocialAuth.extra_data``, whatever EXTRA_DATA says.
TOKEN_KEYS = frozenset(
    {"access_token", "refresh_token", "id_token", "token_type", "code", "code_verifier"}
)
_MISSING = object()


#: 64 characters of [A-Za-z0-9] (RFC 7636 allows 43 to 128 unreserved characters).
_CODE_VERIFIER_LENGTH = 64
#: social-auth settings the backend answers itself, whatever the site configures.
_FORCED_SETTINGS: dict[str, Any] = {
    "PKCE_CODE_CHALLENGE_METHOD": "S256",
    "PKCE_CODE_VERIFIER_LENGTH": _CODE_VERIFIER_LENGTH,
    "USE_PKCE": True,
    "VERIFY_SSL": True,
}


def sanitize_connection_name(value: str) -> str:
    """Strip every character Lexware does not allow in ``connection_name``."""
    cleaned = _CONNECTION_NAME_FORBIDDEN.sub("", value)
    cleaned = " ".join(cleaned.split())
    return cleaned[:CONNECTION_NAME_MAX_LENGTH].strip()


class LexofficeOAuth2(BaseOAuth2PKCE[Any]):
    """lexoffice (Lexware Office) login and connection over OAuth 2.1 + PKCE (S256)."""

    name = "lexoffice"
    ID_KEY = "userId"
    REDIRECT_STATE = False
    STATE_PARAMETER = True
    ACCESS_TOKEN_METHOD = "POST"
    REVOKE_TOKEN_METHOD = "POST"
    PKCE_DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    PKCE_DEFAULT_CODE_VERIFIER_LENGTH = _CODE_VERIFIER_LENGTH
    SEND_USER_AGENT = True
    _spent_state: Any = _MISSING
    _started_state: str | None = None
    EXTRA_DATA = [
        ("organizationId", "organization_id"),
        ("companyName", "company_name"),
        ("connectionId", "connection_id"),
    ]

    # -- endpoints and client authentication -------------------------------------------

    def authorization_url(self) -> str:
        return lexoffice_settings.AUTHORIZE_URL

    def access_token_url(self) -> str:
        return lexoffice_settings.TOKEN_URL

    def revoke_token_url(self, token: Any, uid: Any) -> str:
        return lexoffice_settings.REVOKE_URL

    def get_key_and_secret(self) -> tuple[str, str]:
        return lexoffice_settings.CLIENT_ID, lexoffice_settings.CLIENT_SECRET

    def use_basic_auth(self) -> bool:
        # A confidential client uses client_secret_basic; a public one has no secret.
        return not lexoffice_settings.IS_PUBLIC_CLIENT

    def get_redirect_uri(self, state: str | None = None) -> str:
        # Sent verbatim when configured: it must match the registered URI exactly.
        return lexoffice_settings.REDIRECT_URI or super().get_redirect_uri(state)

    def get_scope(self) -> list[str]:
        return lexoffice_settings.SCOPES

    #: Rate-limit slots the callback took ahead for its calls (code exchange and profile).
    _reserved_slots = 0
    #: The validated token response of this callback's code exchange (revoke_issued_grant).
    _issued_grant: dict[str, Any] | None = None

    @sensitive_variables()  # form data, Basic auth and Bearer header, also in frames below
    def request(self, url: str, **kwargs: Any) -> Any:
        require_secure_url(url)  # the code exchange and the profile lookup carry secrets
        if self._reserved_slots:
            self._reserved_slots -= 1
        else:
            take_slots()
        kwargs.setdefault("timeout", lexoffice_settings.TIMEOUT)
        return super().request(url, **kwargs)

    # -- PKCE: S256 only; TLS always verified ---------------------------------------------

    def setting(self, name: str, default: Any = None) -> Any:
        # These are security properties of the flow, not choices: a site-wide
        # SOCIAL_AUTH_VERIFY_SSL = False set for another provider, or a verifier length
        # outside RFC 7636's 43 to 128, must not reach the code exchange or /v1/profile.
        forced = _FORCED_SETTINGS.get(name, _MISSING)
        if forced is not _MISSING:
            return forced
        return super().setting(name, default)

    def generate_code_challenge(self, code_verifier: str, challenge_method: str) -> str:
        if challenge_method != "S256":
            raise AuthConfigurationError(
                self,
                "Lexware accepts only the S256 code challenge method.",
                code="invalid_setting",
                parameter="PKCE_CODE_CHALLENGE_METHOD",
                stage="begin",
            )
        return str(super().generate_code_challenge(code_verifier, challenge_method))  # type: ignore[no-untyped-call]

    # -- authorization request ------------------------------------------------------------

    def auth_url(self) -> str:
        # social-core un-quotes the whole query when REDIRECT_STATE is False, so a
        # redirect_uri or connection_name holding "?", "=", "/" or spaces would reach
        # Lexware mangled. Percent-encode properly; Lexware decodes and compares exactly.
        state = self.get_or_create_state()
        self._started_state = state
        params = self.auth_params(state)  # type: ignore[no-untyped-call]
        params.update(self.get_scope_argument())  # type: ignore[no-untyped-call]
        params.update(self.auth_extra_arguments())
        return f"{self.authorization_url()}?{urlencode(params, quote_via=quote)}"

    def keep_with_flow(self, key: str, value: str) -> None:
        """Keep ``value`` with the flow this request just started, in the session beside its
        PKCE verifier (social-core's record of the flow, under its state).

        It shares the flow's fate: the callback that spends that state gets it back from
        :meth:`kept_with_flow`; other flows never see it; expired flows are pruned with it.
        """
        if self._started_state is None:
            return
        key_of_flow = self.transaction_key(self._started_state)
        record = self.strategy.session_get(key_of_flow)
        if isinstance(record, dict):
            self.strategy.session_set(key_of_flow, {**record, key: value})

    def kept_with_flow(self, key: str) -> Any:
        """What :meth:`keep_with_flow` kept with the flow whose state this callback spent
        (``None`` before :meth:`spend_state` succeeded)."""
        # social-core keeps the spent flow's record here (its verifier comes from it too).
        record = getattr(self, "_oauth2_transaction", None)
        return record.get(key) if isinstance(record, dict) else None

    def auth_extra_arguments(self) -> dict[str, str]:
        arguments = super().auth_extra_arguments()
        name = self.connection_name()
        if name:
            arguments["connection_name"] = name
        return arguments

    def connection_name(self) -> str:
        """The label Lexware shows in its list of active connections."""
        request = getattr(self.strategy, "request", None)
        user = getattr(request, "user", None)
        configured = lexoffice_settings.CONNECTION_NAME
        if configured and _DOTTED_PATH.match(configured):
            try:
                factory = import_string(configured)
            except ImportError:
                factory = None
            if callable(factory):
                return sanitize_connection_name(str(factory(request, user) or ""))
        if configured:
            return sanitize_connection_name(configured)
        site = request.get_host() if request is not None else ""
        username = user.get_username() if user is not None and user.is_authenticated else ""
        return sanitize_connection_name(" ".join(part for part in (site, username) if part))

    # -- callback: state first, then error, then code -------------------------------------

    def spend_state(self) -> str | None:
        """Check the callback's ``state`` and spend it (single use); once per request.

        The callback view calls this before the pipeline's transaction, so the state
        stays spent whatever happens next; ``auth_complete`` reuses the result.
        """
        if self._spent_state is _MISSING:
            self._spent_state = self.validate_state()
        return cast("str | None", self._spent_state)

    @handle_http_errors
    @sensitive_variables()  # code, verifier and tokens pass through here
    def auth_complete(self, *args: Any, **kwargs: Any) -> Any:
        state = self.spend_state()  # spends the state, also for error callbacks
        self.process_error(self.data)
        code = self.data.get("code")
        if isinstance(code, list):
            code = code[0] if len(code) == 1 else None
        if not isinstance(code, str) or not code or len(code) > 2048:
            raise AuthInputError(self, parameter="code", code="missing_parameter", stage="callback")
        params = self.auth_complete_params(state)
        # Both slots (exchange and profile) before the exchange: once Lexware issued a grant,
        # a rate-limit failure (a cache outage) would leave it stored nowhere and unrevoked.
        take_slots(2)
        self._reserved_slots = 2
        response = self.request_access_token(
            self.access_token_url(),
            data=params,
            headers=self.auth_headers(),
            auth=self.auth_complete_credentials(),  # type: ignore[no-untyped-call]
            method="POST",
        )
        response = self.validate_token_response(response)
        self._issued_grant = response  # until stored: see revoke_issued_grant()
        return self.do_auth(response["access_token"], *args, response=response, **kwargs)

    @sensitive_variables()
    def auth_complete_params(self, state: str | None = None) -> dict[str, str]:
        params: dict[str, str] = super().auth_complete_params(state)  # type: ignore[no-untyped-call]
        params.pop("client_secret", None)  # never in the body (client_secret_basic)
        if self.use_basic_auth():
            params.pop("client_id", None)
        else:
            params["client_id"] = lexoffice_settings.CLIENT_ID
        return params

    @sensitive_variables()
    def validate_token_response(self, response: Any) -> dict[str, Any]:
        """Judge the token response as a refresh's would be judged
        (:mod:`django_lexoffice.token_response`); return it with ``expires_in`` made sane.

        An answer that cannot make a working connection is refused, and the grant it
        created is revoked at once: nobody would hold it otherwise.
        """
        grant = parse_token_response(response)
        if not grant.usable:
            self._revoke_grant(response)
            raise AuthResponseError(self, code="malformed_response", stage="token_exchange")
        if grant.problems:
            logger.warning("lexoffice code exchange answered with %s", "; ".join(grant.problems))
        return {
            **response,
            "access_token": grant.access_token,
            "refresh_token": grant.refresh_token,
            "expires_in": grant.expires_in,
        }

    @sensitive_variables()
    def revoke_issued_grant(self) -> None:
        """Revoke the grant this callback's code exchange created, if there was one.

        For a callback that failed after the exchange (the profile call, the pipeline, the
        database): nothing stored holds the grant, yet Lexware keeps it alive. Call it once
        the pipeline's transaction has ended.
        """
        response, self._issued_grant = self._issued_grant, None
        if response is not None:
            self._revoke_grant(response)

    @sensitive_variables()
    def _revoke_grant(self, response: Any) -> None:
        if not isinstance(response, dict):
            return
        # The refresh token revokes the whole grant; the access token is the fallback.
        refresh_token = response.get("refresh_token")
        access_token = response.get("access_token")
        if is_refresh_token(refresh_token):
            token = refresh_token
        elif is_access_token(access_token):
            token = access_token
        else:
            return
        error = revoke_token(token)
        if error:
            logger.warning("Could not revoke an unused lexoffice grant: %s", error)

    # -- identity: /v1/profile -------------------------------------------------------------

    @sensitive_variables()  # the token, and every frame below (headers) in error reports
    def user_data(self, access_token: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        data = self.get_json(
            lexoffice_settings.PROFILE_URL,
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        )
        return self.validate_profile(data)

    def validate_profile(self, data: Any) -> dict[str, Any]:
        """Check the fields the app relies on; Lexware's stable ids must be strings."""
        created = data.get("created") if isinstance(data, dict) else None
        ok = (
            isinstance(created, dict)
            and _is_id(created.get("userId"))
            and _is_id(data.get("organizationId"))
            and isinstance(data.get("companyName", ""), str)
            and isinstance(data.get("connectionId", ""), (str, type(None)))
            and isinstance(created.get("userName", ""), (str, type(None)))
            and isinstance(created.get("userEmail", ""), (str, type(None)))
        )
        if not ok:
            raise AuthResponseError(self, code="malformed_response", stage="user_info")
        return dict(data)

    def get_user_id(self, details: dict[str, Any], response: dict[str, Any]) -> str:
        # Exact, case-sensitive ids (never the e-mail address).
        return str(response["created"]["userId"])

    def get_user_details(self, response: dict[str, Any]) -> dict[str, Any]:
        created = response.get("created") or {}
        full_name = (created.get("userName") or "").strip()
        email = (created.get("userEmail") or "").strip()
        first_name, last_name = split_name(full_name)
        return {
            "username": email.split("@")[0] if email else "lexoffice",
            "email": email,
            "fullname": full_name,
            "first_name": first_name,
            "last_name": last_name,
        }

    def extra_data(
        self,
        user: Any,
        uid: str,
        response: dict[str, Any],
        details: dict[str, Any],
        pipeline_kwargs: dict[str, Any],
    ) -> dict[str, Any]:
        data = super().extra_data(user, uid, response, details, pipeline_kwargs)
        return {key: value for key, value in data.items() if key not in TOKEN_KEYS}

    # -- pipeline: works with no setting ------------------------------------------------

    @sensitive_variables()  # the token response travels through the pipeline's frames
    def authenticate(self, *args: Any, **kwargs: Any) -> Any:
        # Django's authenticate() hides only its own "credentials" local from error
        # reports; this hides every local of the pipeline below it.
        return super().authenticate(*args, **kwargs)

    def pipeline(self, pipeline: Any, pipeline_index: int = 0, *args: Any, **kwargs: Any) -> Any:
        if not self._site_configures_pipeline():
            pipeline = list(DEFAULT_PIPELINE)
        return super().pipeline(pipeline, pipeline_index, *args, **kwargs)

    def _site_configures_pipeline(self) -> bool:
        return self.strategy.setting("PIPELINE", _MISSING, self) is not _MISSING


#: Salutations and titles Lexware puts in front of a user's name ("Frau Erika Musterfrau").
_NAME_PREFIXES = frozenset(
    {
        "frau",
        "herr",
        "divers",
        "dr.",
        "prof.",
        "dipl.-ing.",
        "mr",
        "mrs",
        "ms",
        "mr.",
        "mrs.",
        "ms.",
    }
)


def split_name(full_name: str) -> tuple[str, str]:
    """First and last name of a Lexware user name, without salutation or title."""
    words = full_name.split()
    while len(words) > 1 and words[0].lower() in _NAME_PREFIXES:
        words.pop(0)
    if not words:
        return "", ""
    return " ".join(words[:-1]) if len(words) > 1 else words[0], words[-1] if len(words) > 1 else ""


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 64
