"""``elmo s3 serve``: run the embedded S3 endpoint (:mod:`pipelines.io.local_s3`) until stopped."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from pipelines.commands.arg_types import port


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("s3", help="embedded S3 endpoint for local runs and tests")
    actions = p.add_subparsers(dest="s3_command", required=True, metavar="ACTION")
    serve = actions.add_parser("serve", help="serve S3 (moto) on 127.0.0.1 until Ctrl-C / SIGTERM")
    serve.add_argument("--port", type=port, default=0, help="port (default: any free port)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--bucket", action="append", default=[], metavar="B",
                       help="bucket to create at start (repeatable)")
    serve.add_argument("--log-requests", action="store_true", help="log every HTTP request")
    serve.set_defaults(handler=serve_command)


def serve_command(args: argparse.Namespace) -> int:
    from pipelines.io.local_s3 import LocalS3

    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with LocalS3(buckets=args.bucket, port=args.port, host=args.host, quiet=not args.log_requests) as s3:
        print(f"S3 endpoint: {s3.endpoint_url}  buckets: {', '.join(args.bucket) or '(none)'}")
        print("# export these to use it (dummy keys; data is kept in memory only):")
        for name, value in s3.env().items():
            print(f"export {name}={value}")
        sys.stdout.flush()
        try:
            while not stopped.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    print("S3 endpoint stopped", file=sys.stderr)
    return 0
