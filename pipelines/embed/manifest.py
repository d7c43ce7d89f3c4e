"""Exactly-once bookkeeping for ``elmo embed`` under an output URL.

``_manifest.json`` records, per input file, its fingerprint (size + ETag/mtime), the hash of the
run settings (model + layers/pooling/dtype) and the output files it produced. A run embeds the
inputs that are new or changed into ``_staging/<run_id>/`` and then commits:

1. ``_commits/<run_id>.json`` is written: the moves (staging → final), the deletions (old outputs
   of replaced inputs) and the new manifest — the commit *intent*;
2. the moves and deletions are applied, ``_manifest.json`` is replaced (one PUT), the intent and
   the staging folder are removed.

Every run first rolls forward any intent left by a run that crashed in step 2 and deletes
staging folders without an intent (runs that crashed before committing). Names starting with
``_`` are skipped by Parquet readers, so ``*.parquet`` under the output URL is exactly the
committed rows — except while step 2 is being applied or after a crash inside it, until the next
run rolls it forward.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import posixpath
import re
import time
from collections.abc import Iterable

from pipelines.io.storage import FileEntry, Location, remove_tree

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"
STAGING = "_staging"
COMMITS = "_commits"


@dataclasses.dataclass(frozen=True)
class InputRecord:
    """What the manifest knows about one committed input file."""

    fingerprint: str
    settings_hash: str
    files: tuple[str, ...]  # output paths relative to the output URL
    rows: int
    run_id: str

    @classmethod
    def from_json(cls, raw: dict) -> InputRecord:
        return cls(raw["fingerprint"], raw["settings_hash"], tuple(raw["files"]), int(raw["rows"]), raw["run_id"])


def input_fingerprint(entry: FileEntry) -> str:
    return f"size:{entry.size};{entry.fingerprint}"


def output_key(input_url: str) -> str:
    """A folder name for one input's outputs: readable slug + short hash of the full URL."""
    slug = re.sub(r"[^A-Za-z0-9.-]+", "-", input_url.split("://", 1)[-1]).strip("-")[-60:]
    return f"{slug}-{hashlib.sha256(input_url.encode()).hexdigest()[:10]}"


def load_manifest(output: Location) -> dict[str, InputRecord]:
    path = output.join(MANIFEST).path
    if not output.fs.exists(path):
        return {}
    raw = json.loads(output.fs.cat_file(path))
    return {url: InputRecord.from_json(rec) for url, rec in raw["inputs"].items()}


def plan(inputs: Iterable[FileEntry], manifest: dict[str, InputRecord], settings_hash: str) -> list[FileEntry]:
    """The inputs to embed now: new, changed, or embedded with other settings."""
    todo = []
    for entry in inputs:
        record = manifest.get(entry.url)
        if record is None or record.fingerprint != input_fingerprint(entry) or record.settings_hash != settings_hash:
            todo.append(entry)
    return todo


def _write_json(output: Location, relative: str, payload: dict) -> None:
    from pipelines.io.storage import write_bytes  # staged write, then move: never a torn file

    write_bytes(output.join(relative).url, json.dumps(payload, indent=1, sort_keys=True).encode())


def commit(output: Location, run_id: str, embedded: list[FileEntry], staged: dict[str, list[str]],
           rows: dict[str, int], manifest: dict[str, InputRecord], settings_hash: str) -> dict[str, InputRecord]:
    """Make ``run_id``'s staged outputs visible and record them; returns the new manifest.

    ``staged[url]`` lists the staging files (relative to the output URL) produced from input ``url``.
    """
    moves, deletes, updated = [], [], dict(manifest)
    for entry in embedded:
        key = output_key(entry.url)
        finals = []
        for k, src in enumerate(sorted(staged.get(entry.url, []))):
            dst = f"{key}/part-{run_id}-{k:05d}.parquet"
            moves.append((src, dst))
            finals.append(dst)
        if entry.url in manifest:
            deletes.extend(manifest[entry.url].files)
        updated[entry.url] = InputRecord(input_fingerprint(entry), settings_hash, tuple(finals),
                                         rows.get(entry.url, 0), run_id)
    intent = {"run_id": run_id, "moves": moves, "deletes": deletes, "created": time.time(),
              "manifest": {"version": 1, "inputs": {u: dataclasses.asdict(r) for u, r in updated.items()}}}
    _write_json(output, f"{COMMITS}/{run_id}.json", intent)
    _apply(output, intent)
    return updated


def _apply(output: Location, intent: dict) -> None:
    """Idempotent: moves whose source is gone are already done."""
    fs = output.fs
    for src, dst in intent["moves"]:
        src_path, dst_path = output.join(src).path, output.join(dst).path
        if fs.exists(src_path):
            if output.scheme == "file":
                fs.makedirs(posixpath.dirname(dst_path), exist_ok=True)
            fs.mv(src_path, dst_path)
    keep = {dst for _, dst in intent["moves"]}
    for old in intent["deletes"]:
        if old not in keep and fs.exists(output.join(old).path):
            fs.rm(output.join(old).path)
    _write_json(output, MANIFEST, intent["manifest"])
    fs.rm(output.join(COMMITS, f"{intent['run_id']}.json").path)
    remove_tree(output.join(STAGING, intent["run_id"]))


def recover(output: Location) -> None:
    """Roll forward commits interrupted mid-way; drop staging left by runs that never committed."""
    fs = output.fs
    commits = output.join(COMMITS).path
    pending = sorted(fs.glob(posixpath.join(commits, "*.json"))) if fs.exists(commits) else []
    for path in pending:
        intent = json.loads(fs.cat_file(path))
        log.warning("completing the interrupted commit of run %s", intent["run_id"])
        _apply(output, intent)
    staging = output.join(STAGING)
    if fs.exists(staging.path):
        for leftover in fs.ls(staging.path, detail=False):
            if leftover.rstrip("/") != staging.path:
                log.warning("removing staging left by an uncommitted run: %s", output.uri(leftover))
                remove_tree(staging.join(posixpath.basename(leftover.rstrip("/"))))
