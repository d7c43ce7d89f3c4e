"""The environment variables that carry storage settings (S3 and GCS) to Ray workers — and the rule
that keeps credentials on the driver.

A Ray that ``elmo`` starts itself is a child of the driver: its workers inherit the driver's
environment, keys included (nothing leaves the machine). A Ray that already runs (``RAY_ADDRESS``
set, e.g. after ``ray start --head``) was started from another shell, so its workers know nothing
of where the driver's storage is: :func:`job_runtime_env` passes the :data:`FORWARDED_VARS` set
here (endpoint, region, profile name, emulator, project) in the job's runtime environment
(``env_vars``).

Credentials (:data:`CREDENTIAL_VARS`: keys, session tokens and the paths of the files that hold
them) are **not** forwarded: Ray records a job's runtime environment in plain text — the job table
(the dashboard's ``/api/jobs/``, ``JobSubmissionClient.list_jobs()``, ``ray list jobs --detail``)
and the head's ``session_*/logs/runtime_env_agent.log``, kept after the job. On a cluster the
workers use the cluster's own credential chain (an instance or pod role, a credentials file on the
nodes). ``ELMO_FORWARD_CREDENTIALS=1`` forwards them anyway, with a warning naming the variables
and where they will appear. ``elmo submit`` follows the same rule (:mod:`pipelines.submit`: the
same :data:`FORWARDED_VARS`; credentials only when named with ``--env``). Values are never logged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping

from elmo_model.errors import ElmoError

log = logging.getLogger(__name__)

# Where storage is and which named profile to use: settings, not secrets. Forwarded to a Ray cluster
# whenever set, by job_runtime_env and by `elmo submit` (one list for both).
FORWARDED_VARS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE",
                  "STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT")
# Who may use it: keys, tokens and the files that hold them (paths on the driver's machine).
# Forwarded only when asked (ELMO_FORWARD_CREDENTIALS=1 here, `--env NAME` for `elmo submit`).
CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE",
                   "AWS_SHARED_CREDENTIALS_FILE", "GOOGLE_APPLICATION_CREDENTIALS")
FORWARD_CREDENTIALS_VAR = "ELMO_FORWARD_CREDENTIALS"
# Where Ray keeps a job's runtime environment in plain text (Ray 2.60; tests/pipelines/test_ray_address.py).
RECORDED_IN = ("the cluster's job table (dashboard /api/jobs/, JobSubmissionClient.list_jobs(), "
               "`ray list jobs --detail`) and the head node's session_*/logs/runtime_env_agent.log")
# Set by Ray's job manager in the driver of a submitted job, whose runtime environment already
# reaches every worker (and refuses a second value for the same variable).
_SUBMITTED_JOB_VAR = "RAY_JOB_CONFIG_JSON_ENV_VAR"
_YES, _NO = ("1", "true", "yes"), ("", "0", "false", "no")


def forwarded_env(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The :data:`FORWARDED_VARS` set (non-empty) in ``environ``: never a credential."""
    return {name: environ[name] for name in FORWARDED_VARS if environ.get(name)}


def credential_env(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The :data:`CREDENTIAL_VARS` set (non-empty) in ``environ``."""
    return {name: environ[name] for name in CREDENTIAL_VARS if environ.get(name)}


def forward_credentials(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``ELMO_FORWARD_CREDENTIALS`` asks for the driver's credentials to be forwarded."""
    value = environ.get(FORWARD_CREDENTIALS_VAR, "").strip().lower()
    if value in _YES:
        return True
    if value in _NO:
        return False
    raise ElmoError(f"{FORWARD_CREDENTIALS_VAR}={environ[FORWARD_CREDENTIALS_VAR]!r}: expected 1 (forward this "
                    "shell's storage credentials to the Ray cluster) or 0")


def exposure_warning(names: Iterable[str], cluster: str) -> str:
    """The warning for credentials put in a job's runtime environment: their names and where they show."""
    return (f"forwarding {', '.join(sorted(names))} to the Ray cluster at {cluster} as asked: their values are "
            f"recorded in plain text in {RECORDED_IN}, readable by anyone who can read those")


def joins_existing_ray(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``ray.init()`` will connect to a Ray started elsewhere (``RAY_ADDRESS``, not ``local``)."""
    address = (environ.get("RAY_ADDRESS") or "").strip()
    return bool(address) and address != "local"


def job_runtime_env(environ: Mapping[str, str] = os.environ) -> dict | None:
    """The runtime environment for ``ray.init``: when joining an existing Ray from outside a submitted
    job, the :data:`FORWARDED_VARS` set here — plus the credentials only with ``ELMO_FORWARD_CREDENTIALS=1``
    (logged as a warning); else None (workers inherit the environment, or the job already carries it)."""
    if not joins_existing_ray(environ) or _SUBMITTED_JOB_VAR in environ:
        return None
    env = forwarded_env(environ)
    credentials = credential_env(environ)
    cluster = environ["RAY_ADDRESS"].strip()
    if credentials and forward_credentials(environ):
        log.warning("%s", exposure_warning(credentials, cluster))
        env.update(credentials)
    elif credentials:
        log.info("not forwarding %s to the Ray cluster at %s: its workers use the cluster's own credentials "
                 "(an instance or pod role, a credentials file on the nodes); %s=1 forwards them, recorded in "
                 "plain text by the cluster", ", ".join(sorted(credentials)), cluster, FORWARD_CREDENTIALS_VAR)
    return {"env_vars": env} if env else None
