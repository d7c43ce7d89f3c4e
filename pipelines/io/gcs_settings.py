"""GCS endpoint, project and credentials, resolved once for both gcsfs and pyarrow.

Explicit :class:`~pipelines.io.s3_settings.StorageOptions` fields win; otherwise the standard
Google variables: ``STORAGE_EMULATOR_HOST`` (an emulator such as fake-gcs-server; its requests are
anonymous), ``GOOGLE_CLOUD_PROJECT`` (the project) and ``GOOGLE_APPLICATION_CREDENTIALS`` (a
service-account or user credentials file). Without a credentials file both libraries follow
Google's default chain (``gcloud auth application-default login``, a VM's or GKE's service account).

With an endpoint set, gcsfs's core filesystem is used: its default "extended" one first asks a
gRPC control plane for each bucket's type, which an emulator does not serve (a 60 s hang per
bucket). Ray Data and Ray Train get the same gcsfs filesystem wrapped for pyarrow, not pyarrow's
native ``GcsFileSystem``: a recursive listing of the native one leaves out directories that exist
only as name prefixes (measured: pyarrow 26 against fake-gcs-server), so Ray Train's download of a
checkpoint with a subdirectory fails ("Failed to open local file …/export/…").

Credentials never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from elmo_model.errors import ElmoError

EMULATOR_VAR = "STORAGE_EMULATOR_HOST"
PROJECT_VAR = "GOOGLE_CLOUD_PROJECT"
CREDENTIALS_VAR = "GOOGLE_APPLICATION_CREDENTIALS"


@dataclass(frozen=True)
class GcsSettings:
    """What both clients need for ``gs://``; ``token`` (a credentials file) None = Google's default chain."""

    endpoint_url: str | None
    project: str | None
    anonymous: bool
    token: str | None = field(default=None, repr=False)

    def gcsfs_filesystem(self) -> Any:
        """A gcsfs filesystem (listing cache off: outputs change while a job runs)."""
        try:
            import gcsfs
            import gcsfs.core
        except ImportError:
            raise ElmoError("gs:// needs gcsfs: pip install 'elmo-ray[gcs]'") from None
        kwargs: dict = {"use_listings_cache": False, "token": "anon" if self.anonymous else self.token}
        if self.project:
            kwargs["project"] = self.project
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
            return gcsfs.core.GCSFileSystem(**kwargs)
        return gcsfs.GCSFileSystem(**kwargs)

    def pyarrow_filesystem(self, fs: Any) -> Any:
        """``fs`` (gcsfs) as a pyarrow filesystem, for Ray Data and Ray Train."""
        import pyarrow.fs

        return pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs))


def _endpoint(value: str | None) -> str | None:
    if not value or not value.strip() or value.strip() == "default":
        return None
    value = value.strip().rstrip("/")
    return value if value.startswith(("http://", "https://")) else f"http://{value}"


def resolve_gcs(url: str, options: Any = None) -> GcsSettings:
    """Endpoint, project and credentials for ``url`` from ``options`` (StorageOptions) then the environment."""
    endpoint = _endpoint(getattr(options, "gcs_endpoint_url", None) or os.environ.get(EMULATOR_VAR))
    project = getattr(options, "gcs_project", None) or os.environ.get(PROJECT_VAR) or None
    token = getattr(options, "gcs_token", None) or os.environ.get(CREDENTIALS_VAR) or None
    anonymous = bool(getattr(options, "anonymous", False)) or (endpoint is not None and token is None)
    if token and not anonymous and not os.path.isfile(token):
        raise ElmoError(f"{url}: the GCS credentials file named by {CREDENTIALS_VAR} or gcs_token does not exist")
    return GcsSettings(endpoint, project, anonymous, None if anonymous else token)
