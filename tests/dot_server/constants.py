"""Values shared by the DOT server (subprocess) and the tests (which must not import DOT)."""

from __future__ import annotations

#: The company ``/v1/profile`` reports.
COMPANY_NAME = "DOT Testfirma GmbH"
#: The resource owner's e-mail address (reported as ``created.userEmail``).
USER_EMAIL = "erika@dot.example"
#: Readiness probe path of the DOT server.
READY_PATH = "/ready"
