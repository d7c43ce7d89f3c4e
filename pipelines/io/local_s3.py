"""An embedded S3 endpoint for laptops, the demo and the tests: moto in server mode.

``with LocalS3(buckets=["corpus"]) as s3:`` serves a real HTTP S3 API on 127.0.0.1 (a free port
unless one is given) from a thread of this process; ``s3.env()`` holds the variables a client —
s3fs, pyarrow (through :mod:`pipelines.io.storage`), the ``elmo`` CLI, Ray workers — needs to reach
it. Needs the ``local-s3`` extra.

Data lives in memory. moto keeps one store per process, so servers running at the same time in
one process see the same buckets; the store is emptied when the last of them stops.
"""

from __future__ import annotations

import logging

from elmo_model.errors import ElmoError
from pipelines.io.s3_settings import StorageOptions

# moto accepts any keys; these only have to be present so that clients sign their requests.
DUMMY_KEY = "testing"
REGION = "us-east-1"


class LocalS3:
    """moto's S3 on ``host:port`` (port 0 = any free port), with ``buckets`` created at start."""

    _running = 0  # servers of this process (they share moto's store)

    def __init__(self, buckets: list[str] | tuple[str, ...] = (), port: int = 0, host: str = "127.0.0.1",
                 quiet: bool = True) -> None:
        self.host, self.port, self.buckets = host, port, list(buckets)
        self.quiet = quiet
        self._server = None

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("LocalS3 is not running: call start() or use it as a context manager")
        return f"http://{self.host}:{self.port}"

    def start(self) -> LocalS3:
        try:
            from moto.server import ThreadedMotoServer
        except ImportError:
            raise ElmoError("the embedded S3 needs moto: pip install 'elmo-ray[local-s3]'") from None
        if self.quiet:
            logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
        server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        try:
            server.start()
        except OSError as exc:
            raise ElmoError(f"cannot serve S3 on {self.host}:{self.port}: {exc.strerror or exc}") from None
        self._server = server
        LocalS3._running += 1
        self.port = server.get_host_and_port()[1]
        for bucket in self.buckets:
            self.create_bucket(bucket)
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        LocalS3._running -= 1
        if LocalS3._running == 0:
            from moto.moto_api import state_manager  # noqa: F401 - registers the backends
            from moto.moto_api._internal.models import moto_api_backend

            moto_api_backend.reset()  # the last server of this process leaves an empty store
        self._server.stop()
        self._server = None

    def __enter__(self) -> LocalS3:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def create_bucket(self, name: str) -> None:
        """Create bucket ``name`` (at least 3 characters, S3's naming rules)."""
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint_url, region_name=REGION,
                              aws_access_key_id=DUMMY_KEY, aws_secret_access_key=DUMMY_KEY)
        try:
            client.create_bucket(Bucket=name)
        except Exception as exc:  # botocore.ClientError / ParamValidationError
            raise ElmoError(f"cannot create bucket {name!r} on {self.endpoint_url}: {exc}") from None

    def env(self) -> dict[str, str]:
        """Environment for clients of this endpoint (dummy keys; instance metadata lookups off)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": DUMMY_KEY,
            "AWS_SECRET_ACCESS_KEY": DUMMY_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def storage_options(self) -> StorageOptions:
        """The same settings as explicit :class:`StorageOptions` (no environment needed)."""
        return StorageOptions(endpoint_url=self.endpoint_url, region=REGION,
                              access_key_id=DUMMY_KEY, secret_access_key=DUMMY_KEY)
