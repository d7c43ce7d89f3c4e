"""Exactly-once bookkeeping for ``elmo embed`` under an output URL.

``_manifest.json`` records, per input file, its fingerprint (size + ETag/mtime), the hash of the
run settings (model + layers/pooling/dtype) and the output files it produced, plus the id of the
last commit; an input of which only some read blocks (:mod:`pipelines.ingest.blocks`) are
committed also records the keys of all its blocks (``parts``) and of those committed (``done``),
and the next run embeds only the rest. A run (holding the output's lease,
:mod:`pipelines.io.lease`) embeds groups of read blocks of new, changed or partly committed
inputs into ``_staging/<run_id>/<group>/`` and commits each group as it finishes:

1. ``_commits/<commit_id>.json`` is written: the moves (staging → final) and the deletions (old
   outputs of replaced inputs) — the commit *intent*;
2. ``_manifest.json`` is replaced by a **compare-and-swap** on the token (ETag) it had when this
   run read it: if anything else changed it since, the commit is refused, its intent and staging
   are discarded, and the run stops (:class:`ManifestChanged`). This is the commit point;
3. the moves and deletions are applied, the intent and the group's staging folder are removed.

Every run first recovers, under its lease: it rolls forward the intent the manifest names (a run
that crashed in step 3), drops other intents and every staging folder (runs that crashed or lost
before their commit point), and deletes committed-looking files (``<key>/part-*.parquet``) that
the manifest does not list (e.g. duplicates left by older versions). Before it deletes anything
it "fences" the manifest (a compare-and-swap that only records its run id), so a run that lost
its lease but is still running can no longer reach its commit point. Names starting with ``_``
are skipped by Parquet readers, so ``*.parquet`` under the output URL is exactly the committed
rows — except while step 3 is applied or after a crash inside it, until the next run recovers.
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

from elmo_model.errors import ElmoError
from pipelines.io.conditional import ConditionFailed, create_exclusive, read_versioned, replace_if
from pipelines.io.storage import FileEntry, Location, list_files, remove_tree

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"
STAGING = "_staging"
COMMITS = "_commits"
_PART = re.compile(r"^[^/_.][^/]*/part-[^/]+\.parquet$")  # <output key>/part-….parquet: what commits write


@dataclasses.dataclass(frozen=True)
class InputRecord:
    """What the manifest knows about one committed input file."""

    fingerprint: str
    settings_hash: str
    files: tuple[str, ...]  # output paths relative to the output URL
    rows: int
    run_id: str
    parts: tuple[str, ...] = ()  # while only some blocks are committed: the keys of all the input's read blocks
    done: tuple[str, ...] = ()  # … and of those committed (pipelines.ingest.blocks); both empty: complete

    @property
    def complete(self) -> bool:
        return not self.parts

    def continues(self, entry: FileEntry, settings_hash: str) -> bool:
        """Whether this is a partly committed record of the same input version and settings."""
        return (not self.complete and self.fingerprint == input_fingerprint(entry)
                and self.settings_hash == settings_hash)

    def remaining(self) -> list[str]:
        """Keys of the blocks still to embed (those of ``parts`` not in ``done``, in plan order)."""
        done = set(self.done)
        return [key for key in self.parts if key not in done]

    def as_json(self) -> dict:
        raw = dataclasses.asdict(self)
        if self.complete:  # complete records keep the layout of earlier versions
            del raw["parts"], raw["done"]
        return raw

    @classmethod
    def from_json(cls, raw: dict) -> InputRecord:
        return cls(raw["fingerprint"], raw["settings_hash"], tuple(raw["files"]), int(raw["rows"]), raw["run_id"],
                   tuple(raw.get("parts", ())), tuple(raw.get("done", ())))


def input_fingerprint(entry: FileEntry) -> str:
    return f"size:{entry.size};{entry.fingerprint}"


def output_key(input_url: str) -> str:
    """A folder name for one input's outputs: readable slug + short hash of the full URL."""
    slug = re.sub(r"[^A-Za-z0-9.-]+", "-", input_url.split("://", 1)[-1]).strip("-")[-60:]
    return f"{slug}-{hashlib.sha256(input_url.encode()).hexdigest()[:10]}"



class ManifestChanged(ElmoError):
    """The manifest changed since this run read it: another run committed or fenced the output."""


@dataclasses.dataclass(frozen=True)
class ManifestState:
    """The manifest as read, with the token a compare-and-swap on it must name (None: no manifest)."""

    inputs: dict[str, InputRecord]
    commit: str | None
    fence: str | None
    token: str | None
    binding: dict | None = None  # the one model and output settings of every row (see :func:`binding_of`)

    def payload(self, inputs: dict[str, InputRecord], commit: str | None, fence: str | None,
                binding: dict | None = None) -> bytes:
        raw = {"version": 2, "commit": commit, "fence": fence,
               "inputs": {u: r.as_json() for u, r in sorted(inputs.items())}}
        if binding is not None:
            raw["binding"] = binding
        return json.dumps(raw, indent=1, sort_keys=True).encode()


def binding_of(state: ManifestState) -> dict | None:
    """The model and output settings the output is bound to: the manifest's ``binding``; for a
    manifest of an earlier version, the settings hash all its inputs share (``{"settings_hash": h}``),
    or ``{"settings_hash": "mixed"}`` when they differ; None for an empty output."""
    if state.binding is not None:
        return state.binding
    hashes = {r.settings_hash for r in state.inputs.values()}
    if not hashes:
        return None
    return {"settings_hash": hashes.pop() if len(hashes) == 1 else "mixed"}


def read_state(output: Location) -> ManifestState:
    current = read_versioned(output.join(MANIFEST))
    if current is None:
        return ManifestState({}, None, None, None)
    try:
        raw = json.loads(current.data)
        inputs = {url: InputRecord.from_json(rec) for url, rec in raw["inputs"].items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise ElmoError(f"{output.join(MANIFEST).url}: not a readable manifest ({type(exc).__name__}: {exc})") from None
    return ManifestState(inputs, raw.get("commit"), raw.get("fence"), current.token, raw.get("binding"))


def load_manifest(output: Location) -> dict[str, InputRecord]:
    return read_state(output).inputs


def _swap(output: Location, state: ManifestState, inputs: dict[str, InputRecord], commit: str | None,
          fence: str | None, binding: dict | None = None) -> ManifestState:
    """Replace the manifest only if it is still ``state`` (raises :class:`ConditionFailed`); the
    binding stays ``state``'s unless one is given."""
    binding = binding if binding is not None else state.binding
    data = state.payload(inputs, commit, fence, binding)
    loc = output.join(MANIFEST)
    token = create_exclusive(loc, data) if state.token is None else replace_if(loc, data, state.token)
    return ManifestState(inputs, commit, fence, token, binding)


def plan(inputs: Iterable[FileEntry], manifest: dict[str, InputRecord], settings_hash: str) -> list[FileEntry]:
    """The inputs to embed now: new, changed, embedded with other settings, or only partly committed."""
    todo = []
    for entry in inputs:
        record = manifest.get(entry.url)
        if (record is None or record.fingerprint != input_fingerprint(entry) or record.settings_hash != settings_hash
                or not record.complete):
            todo.append(entry)
    return todo


def _write_json(output: Location, relative: str, payload: dict) -> None:
    from pipelines.io.storage import write_bytes  # staged write, then move: never a torn file

    write_bytes(output.join(relative).url, json.dumps(payload, indent=1, sort_keys=True).encode())


def commit(output: Location, state: ManifestState, commit_id: str, staging: Location, embedded: list[FileEntry],
           staged: dict[str, list[str]], rows: dict[str, int], settings_hash: str,
           blocks: dict[str, list[str]] | None = None, parts: dict[str, list[str]] | None = None,
           binding: dict | None = None, drop: Iterable[str] = (), replace_all: bool = False) -> ManifestState:
    """Make the staged outputs of one group visible and record them; returns the new manifest state.

    ``staged[url]`` lists the staging files (relative to the output URL) produced from input ``url``;
    ``staging`` is the group's staging folder. ``blocks[url]`` names the read blocks of ``url`` this
    group holds and ``parts[url]`` all of that input's blocks (both absent: the whole input): an input
    whose blocks are not all committed yet is recorded with ``parts``/``done`` and continued by the
    next run. The first commit of a new version of an input deletes the old version's files.
    ``binding`` is recorded as the output's model and settings; the inputs in ``drop`` lose their
    rows and records; ``replace_all``: every earlier row is deleted, whatever its input (a switch
    to another model in one commit). Raises :class:`ManifestChanged` (after discarding the
    group's intent and staging) when the manifest is no longer ``state``.
    """
    moves, deletes = [], []
    updated = {} if replace_all else dict(state.inputs)
    for url in (state.inputs if replace_all else drop):
        if url in state.inputs:
            deletes.extend(state.inputs[url].files)
            updated.pop(url, None)
    for entry in embedded:
        key = output_key(entry.url)
        finals = []
        for k, src in enumerate(sorted(staged.get(entry.url, []))):
            dst = f"{key}/part-{commit_id}-{k:05d}.parquet"
            moves.append((src, dst))
            finals.append(dst)
        previous = None if replace_all else state.inputs.get(entry.url)
        in_group = list((blocks or {}).get(entry.url, ()))
        all_parts = list((parts or {}).get(entry.url, in_group))
        kept, kept_rows, done = (), 0, in_group
        if previous is not None and previous.continues(entry, settings_hash):
            kept, kept_rows, done = previous.files, previous.rows, [*previous.done, *in_group]
        elif previous is not None:
            deletes.extend(previous.files)
        complete = set(all_parts) <= set(done)
        updated[entry.url] = InputRecord(input_fingerprint(entry), settings_hash, (*kept, *finals),
                                         kept_rows + rows.get(entry.url, 0), commit_id,
                                         () if complete else tuple(all_parts), () if complete else tuple(done))
    intent_path = f"{COMMITS}/{commit_id}.json"
    intent = {"commit": commit_id, "moves": moves, "deletes": deletes, "staging": staging.path, "created": time.time()}
    _write_json(output, intent_path, intent)
    try:
        new_state = _swap(output, state, updated, commit_id, state.fence, binding)  # the commit point
    except ConditionFailed:
        _rm(output, intent_path)
        remove_tree(staging)
        raise ManifestChanged(f"{output.url}: refused to commit: _manifest.json changed since this run read it "
                              "(another run took over this output); this run's staged files were discarded") from None
    _apply(output, intent)
    _rm(output, intent_path)
    return new_state


def _rm(output: Location, relative: str) -> None:
    path = output.join(relative).path
    try:
        output.fs.rm_file(path)
    except FileNotFoundError:
        pass


def _apply(output: Location, intent: dict) -> None:
    """Idempotent: moves whose source is gone are already done. Old files go first, then the new
    ones move in: a reader of ``*.parquet`` during the switch may miss rows, never sees two versions."""
    fs = output.fs
    keep = {dst for _, dst in intent["moves"]}
    for old in intent["deletes"]:
        if old not in keep:
            _rm(output, old)
    for src, dst in intent["moves"]:
        src_path, dst_path = output.join(src).path, output.join(dst).path
        if fs.exists(src_path):
            if output.scheme == "file":
                fs.makedirs(posixpath.dirname(dst_path), exist_ok=True)
            fs.mv(src_path, dst_path)
    staging = intent.get("staging")
    if staging and staging.startswith(output.join(STAGING).path + "/"):
        remove_tree(Location(output.uri(staging), output.scheme, staging, output.fs, output.arrow_fs))


def _listed(output: Location, folder: str) -> list[str]:
    """Immediate children (full paths) of ``output/folder``; [] when it does not exist."""
    path = output.join(folder).path
    fs = output.fs
    if not fs.exists(path):
        return []
    return [p.rstrip("/") for p in fs.ls(path, detail=False) if p.rstrip("/") != path]


def _committed_looking(output: Location) -> list[str]:
    """Files laid out as commits lay them out (``<key>/part-*.parquet``), relative to the output URL."""
    if not output.fs.exists(output.path):
        return []
    found = list_files(output.url, allow_empty=True)
    relative = [e.path[len(output.path):].lstrip("/") for e in found]
    return [r for r in relative if _PART.match(r)]


def leftovers(output: Location, state: ManifestState) -> tuple[list[str], list[str], list[str]]:
    """What recovery would act on: commit intents, staging folders and committed-looking files
    that ``state`` does not list."""
    intents = [p for p in _listed(output, COMMITS) if p.endswith(".json")]
    stagings = _listed(output, STAGING)
    listed = {f for record in state.inputs.values() for f in record.files}
    orphans = [f for f in _committed_looking(output) if f not in listed]
    return intents, stagings, orphans


def recover(output: Location, run_id: str, attempts: int = 5) -> ManifestState:
    """Under the lease: finish or drop what earlier runs left, remove unlisted output files; returns
    the manifest state this run commits against."""
    for _ in range(attempts):
        state = read_state(output)
        intents, stagings, orphans = leftovers(output, state)
        if not (intents or stagings or orphans):
            return state
        try:  # from here on, a run that lost its lease cannot commit any more
            state = _swap(output, state, state.inputs, state.commit, run_id)
        except ConditionFailed:
            continue
        for path in sorted(intents):
            intent = json.loads(output.fs.cat_file(path))
            if intent.get("commit") == state.commit:
                log.warning("completing the interrupted commit %s", intent["commit"])
                _apply(output, intent)
            else:
                log.warning("dropping commit intent %s (never reached its commit point)", output.uri(path))
            output.fs.rm_file(path)
        for path in stagings:
            log.warning("removing staging left by a run that did not commit: %s", output.uri(path))
            remove_tree(Location(output.uri(path), output.scheme, path, output.fs, output.arrow_fs))
        listed = {f for record in state.inputs.values() for f in record.files}
        for relative in _committed_looking(output):
            if relative not in listed:
                log.warning("removing %s: not listed in %s (left by an interrupted or concurrent run)",
                            output.join(relative).url, MANIFEST)
                _rm(output, relative)
        return state
    raise ManifestChanged(f"{output.url}: _manifest.json kept changing during recovery; is another elmo embed "
                          "writing there without the lease?")
