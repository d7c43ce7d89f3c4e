"""The environment variables that carry storage settings (S3 and GCS) to Ray workers.

A Ray that ``elmo`` starts itself is a child of the driver: its workers inherit the driver's
environment. A Ray that already runs (``RAY_ADDRESS`` set, e.g. after ``ray start --head``) was
started from another shell, so its workers know nothing of the endpoint, region or keys the
driver was given: :func:`job_runtime_env` passes them in the job's runtime environment
(``env_vars``), as ``elmo submit`` does (:mod:`pipelines.submit`). Values are never logged; note
that anyone who can read the cluster's job list can read a job's runtime environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# Where storage is, not who may use it (``elmo submit`` forwards these whenever they are set).
LOCATION_VARS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION",
                 "AWS_EC2_METADATA_DISABLED", "STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT")
# Who may use it: keys, profiles and the files that hold them.
CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                   "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "GOOGLE_APPLICATION_CREDENTIALS")
# Set by Ray's job manager in the driver of a submitted job, whose runtime environment already
# reaches every worker (and refuses a second value for the same variable).
_SUBMITTED_JOB_VAR = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def storage_env(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The storage variables set (non-empty) in ``environ``: locations and credentials."""
    return {name: environ[name] for name in (*LOCATION_VARS, *CREDENTIAL_VARS) if environ.get(name)}


def joins_existing_ray(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``ray.init()`` will connect to a Ray started elsewhere (``RAY_ADDRESS``, not ``local``)."""
    address = (environ.get("RAY_ADDRESS") or "").strip()
    return bool(address) and address != "local"


def job_runtime_env(environ: Mapping[str, str] = os.environ) -> dict | None:
    """The runtime environment for ``ray.init``: the storage variables when joining an existing Ray
    from outside a submitted job, else None (workers inherit them, or the job already carries them)."""
    if not joins_existing_ray(environ) or _SUBMITTED_JOB_VAR in environ:
        return None
    env = storage_env(environ)
    return {"env_vars": env} if env else None
