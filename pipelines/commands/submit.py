"""``elmo submit``: run another ``elmo`` subcommand as a Ray job (:mod:`pipelines.submit`)."""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  elmo submit --address http://HEAD:8265 -- vocab --input s3://corpus/text/ --output s3://corpus/vocab/
  RAY_ADDRESS=http://HEAD:8265 elmo submit --no-wait -- embed --model s3://models/elmo/ \\
      --input s3://corpus/text/ --output s3://corpus/embeddings/ --gpus-per-actor 1

Where storage is (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3, AWS_REGION, AWS_DEFAULT_REGION,
AWS_PROFILE, STORAGE_EMULATOR_HOST, GOOGLE_CLOUD_PROJECT) is forwarded when set; anything else,
keys included, only with --env (values are never printed; the cluster records them in plain text in
its job table and the head's runtime_env_agent.log, so the cluster should have its own
credentials). Ctrl-C (or SIGTERM) stops the job.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", help="run an elmo subcommand as a job on a Ray cluster, streaming its logs",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--address", metavar="URL",
                   help="the cluster's dashboard, e.g. http://HEAD:8265 (default: $RAY_ADDRESS)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--working-dir", metavar="DIR",
                       help="directory uploaded with the job, its current directory "
                            "(default: this checkout, if elmo runs from one)")
    where.add_argument("--no-working-dir", action="store_true",
                       help="upload nothing: the package must be installed on the cluster")
    p.add_argument("--pip", action="append", default=[], metavar="REQ",
                   help="extra pip requirement installed for the job (repeatable)")
    p.add_argument("--env", action="append", default=[], metavar="KEY[=VALUE]",
                   help="environment variable for the job; KEY alone copies it from here (repeatable)")
    p.add_argument("--no-wait", action="store_true", help="submit, print the job id and return")
    p.add_argument("job_command", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
                   help="the elmo subcommand and its flags (a leading 'elmo' is allowed)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from elmo_model.errors import ElmoError
    from pipelines import submit

    command = submit.elmo_command(args.job_command, args.build_parser)
    if args.no_working_dir:
        working_dir = None
    elif args.working_dir:
        path = Path(args.working_dir).expanduser()
        if not path.is_dir():
            raise ElmoError(f"--working-dir {args.working_dir}: not a directory")
        working_dir = str(path.resolve())
    else:
        root = submit.project_dir()
        working_dir = str(root) if root else None
    submission = submit.Submission(address=submit.resolve_address(args.address), command=command,
                                   working_dir=working_dir, pip=tuple(args.pip),
                                   env_vars=submit.env_vars(args.env))
    return submit.run(submission, wait=not args.no_wait)
