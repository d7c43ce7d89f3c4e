"""One module per ``elmo`` subcommand: its argparse flags and a handler that calls the job.

Each module has ``register(subparsers)``; :mod:`pipelines.cli` imports and registers them.
Handlers import the jobs (and so Ray, pyarrow, torch) only when they run.
"""
