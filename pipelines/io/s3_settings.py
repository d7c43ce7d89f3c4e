"""S3 endpoint, region and credentials, resolved once for both s3fs and pyarrow.

s3fs (botocore) follows the whole AWS chain by itself; pyarrow's ``S3FileSystem`` ignores
``AWS_ENDPOINT_URL`` and profiles given by name. This module reads the standard chain with
botocore (explicit options → ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` → the profile's
config) and hands both libraries the same endpoint, region and — where the credentials are static
— the same keys. Refreshable credentials (instance or container roles, SSO, assume-role) are left
to each library's own chain so that long jobs keep working after they rotate.

Credentials never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from elmo_model.errors import ElmoError

DEFAULT_REGION = "us-east-1"
# botocore's names for credentials that never change while the process runs.
_STATIC_METHODS = {"env", "explicit", "shared-credentials-file", "config-file", "boto2-config"}
# botocore says at INFO level where it found the endpoint and the keys, on every client.
for _name in ("botocore.credentials", "botocore.configprovider"):
    if logging.getLogger(_name).level == logging.NOTSET:
        logging.getLogger(_name).setLevel(logging.WARNING)


@dataclass(frozen=True)
class StorageOptions:
    """Explicit storage settings; every field left at its default defers to the AWS chain (S3) or to
    Google's variables and default credentials (GCS, :mod:`pipelines.io.gcs_settings`)."""

    endpoint_url: str | None = None  # e.g. http://127.0.0.1:9000 for a local S3
    region: str | None = None
    profile: str | None = None
    anonymous: bool = False
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    gcs_endpoint_url: str | None = None  # e.g. http://127.0.0.1:4443 for a GCS emulator
    gcs_project: str | None = None
    gcs_token: str | None = field(default=None, repr=False)  # a credentials JSON file


@dataclass(frozen=True)
class S3Settings:
    """What both clients need; ``keys`` is None when each library should find them itself."""

    endpoint_url: str | None
    region: str
    profile: str | None
    anonymous: bool
    keys: tuple[str, str, str | None] | None = field(default=None, repr=False)

    def s3fs_kwargs(self) -> dict:
        kwargs: dict = {"anon": self.anonymous, "client_kwargs": {"region_name": self.region},
                        "use_listings_cache": False}
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        if self.keys:
            kwargs.update(key=self.keys[0], secret=self.keys[1], token=self.keys[2])
        elif self.profile:
            kwargs["profile"] = self.profile
        return kwargs

    def pyarrow_kwargs(self) -> dict:
        kwargs: dict = {"region": self.region, "anonymous": self.anonymous}
        if self.endpoint_url:
            parts = urlsplit(self.endpoint_url)
            kwargs.update(scheme=parts.scheme or "https", endpoint_override=parts.netloc or parts.path)
        if self.keys:
            kwargs.update(access_key=self.keys[0], secret_key=self.keys[1], session_token=self.keys[2])
        return kwargs


def resolve_s3(url: str, options: StorageOptions | None = None) -> S3Settings:
    """Endpoint, region and credentials for ``url``; no credentials at all → :class:`ElmoError`."""
    options = options or StorageOptions()
    import botocore.exceptions
    import botocore.session

    try:
        session = botocore.session.Session(profile=options.profile)
        scoped = session.get_scoped_config()
        endpoint = options.endpoint_url or _configured_endpoint(session, scoped)
        region = (options.region or os.environ.get("AWS_REGION") or session.get_config_variable("region")
                  or DEFAULT_REGION)
        if options.anonymous:
            return S3Settings(endpoint, region, options.profile, True)
        if options.access_key_id and options.secret_access_key:
            keys = (options.access_key_id, options.secret_access_key, options.session_token)
            return S3Settings(endpoint, region, options.profile, False, keys)
        credentials = session.get_credentials()
    except botocore.exceptions.ProfileNotFound:
        raise ElmoError(f"{url}: AWS profile {options.profile!r} not found") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise ElmoError(f"{url}: cannot read the AWS configuration ({type(exc).__name__})") from None
    if credentials is None:
        raise ElmoError(f"{url}: no AWS credentials found (set AWS_ACCESS_KEY_ID and "
                        "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or use an instance role)")
    keys = None
    if credentials.method in _STATIC_METHODS:
        frozen = credentials.get_frozen_credentials()
        keys = (frozen.access_key, frozen.secret_key, frozen.token)
    return S3Settings(endpoint, region, options.profile, False, keys)


def _configured_endpoint(session, scoped: dict) -> str | None:
    """``AWS_ENDPOINT_URL_S3`` → ``AWS_ENDPOINT_URL`` → the profile's ``endpoint_url`` settings."""
    from botocore.configprovider import ConfiguredEndpointProvider

    provider = ConfiguredEndpointProvider(full_config=session.full_config, scoped_config=scoped,
                                          client_name="s3")
    return provider.provide()
