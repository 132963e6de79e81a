"""Connect Django sites to lexoffice (Lexware Office) over OAuth 2.1 + PKCE."""

__version__ = "0.1.0"
