"""Logging for the ``elmo`` command: what ``-v`` shows, and what it never shows.

- ``-v`` turns on DEBUG for elmo-ray and the libraries, except the wire loggers of the HTTP and
  cloud clients (botocore, urllib3, s3fs, aiobotocore, google-auth, gcsfs, …), which log request
  headers — ``Authorization`` (with the access key id) and ``X-Amz-Security-Token`` — at DEBUG.
  They stay at INFO.
- Every record passes through :class:`RedactingFormatter`, which replaces the values of the
  credential environment variables and any ``Authorization`` / security-token header value with
  ``***``, in case some other logger prints them.
"""

from __future__ import annotations

import logging
import os
import re

# Loggers that print HTTP requests (headers, signed URLs) or credential lookups at DEBUG.
WIRE_LOGGERS = ("botocore", "boto3", "s3transfer", "aiobotocore", "s3fs", "urllib3", "requests",
                "google", "google.auth", "google_auth_httplib2", "gcsfs", "httpx", "httpcore", "hpack",
                "aiohttp", "websockets", "fsspec")
SECRET_ENV_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ACCESS_KEY_ID",
                   "GOOGLE_OAUTH_ACCESS_TOKEN", "RAY_AUTH_TOKEN")
MASK = "***"
# Header names whose values are secrets, written as dict reprs ('Authorization': b'AWS4…') or raw lines.
_HEADER = re.compile(r"""(?i)((?:authorization|x-amz-security-token|x-amz-credential|x-goog-api-key|"""
                     r"""aws_secret_access_key|aws_session_token|security[-_]token)['"]?\s*[:=]\s*b?['"]?)"""
                     r"""([^'",\s}&]+(?:\s+[^'",\s}&]+)*)""")


def redact(text: str) -> str:
    """``text`` with credential values (from the environment, and in auth headers) replaced by ``***``."""
    for name in SECRET_ENV_VARS:
        value = os.environ.get(name, "")
        if len(value) >= 4:
            text = text.replace(value, MASK)
    return _HEADER.sub(lambda m: m.group(1) + MASK, text)


class RedactingFormatter(logging.Formatter):
    """A formatter whose output (message and traceback) never holds credential values."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(verbose: bool) -> None:
    """Root handler on stderr (DEBUG with ``verbose``, else INFO); wire loggers never below INFO."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    formatter = RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)
    for name in WIRE_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)

