"""Support for the tests that need a real HTTP server in a subprocess.

* :mod:`tests.dot_server.live`: start, wait for and stop a Django dev server subprocess
  (used by ``test_dot_crosscheck.py`` and ``test_demo_browser.py``).
* ``settings``, ``urls``, ``views``, ``bootstrap``: a tiny project around django-oauth-toolkit,
  a real OAuth 2 authorization server configured like Lexware's (PKCE S256 only, rotating
  refresh tokens with reuse protection, client_secret_basic), plus a ``/v1/profile`` stub.
"""
