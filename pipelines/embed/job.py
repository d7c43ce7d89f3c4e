"""``elmo embed``: contextual vectors for a corpus, on a Ray actor pool, written as Parquet.

    lease on the output (pipelines.io.lease) → recovery of what earlier runs left →
    inputs (listed, fingerprinted) → manifest says which are new/changed/partly done → read blocks
    (pipelines.ingest.blocks: line-aligned byte ranges, row groups; about 4 per actor, at most
    ``block_bytes``) → placement check (pipelines.embed.placement) → groups of blocks
    (``commit_bytes``), each: Ray Data reads the blocks (``read_cpus`` per task) → EmbedActor pool
    (model loaded once per actor) → Parquet under <output>/_staging/<run>/<group>/ → commit
    (pipelines.embed.manifest): manifest compare-and-swap, files moved into <output>/<input key>/.

A rerun with nothing new does nothing; a crash loses at most the group in progress, even inside
one large file (the next run removes its staging and embeds only the blocks not committed); a
changed input's old files are replaced; a second run on the same output waits for the lease or
stops (exit status 75).
"""

from __future__ import annotations

import _thread
import contextlib
import dataclasses
import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from collections.abc import Iterator
from typing import Literal

import pyarrow as pa

from elmo_model.errors import ElmoError
from elmo_model.precision_modes import PRECISION_CHOICES
from pipelines import fault_injection
from pipelines.embed import manifest
from pipelines.embed.output import OutputSpec
from pipelines.embed.placement import PoolNeeds
from pipelines.embed.precision import auto_from_binding, resolve_run_precision
from pipelines.io.lease import LeaseLost, RunLease
from pipelines.ingest.blocks import DEFAULT_BLOCK_BYTES, MIN_BLOCK_BYTES, ReadBlock, block_size
from pipelines.ingest.reader import DEFAULT_READ_CPUS, READ_TASK_MEMORY, IngestConfig, InputPlan, check_sentences, list_inputs
from pipelines.io.storage import FileEntry, Location, StorageOptions, check_output, remove_tree, resolve

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedJobConfig:
    """``elmo embed`` settings (TOML: top level and ``[ingest]``)."""

    model: str = ""  # directory with options.json + weights.hdf5
    inputs: tuple[str, ...] = ()
    output: str = ""
    layers: str = "top"  # all | top | average | mix:w0,w1,...
    pooling: Literal["none", "mean", "max"] = "none"
    layout: Literal["sentence", "token"] = "sentence"  # one row per sentence, or per token (vector stores)
    dtype: Literal["float32", "float16"] = "float32"
    batch_size: int = 256  # sentences per actor call
    sub_batch: int | None = None  # sentences per forward pass in the actor (None: measured per model shape)
    precision: str = "fp32"  # fp32 | bf16 | int8 | auto (elmo_model.model.precision; auto is resolved once per run)
    actors: tuple[int, ...] = (1, 2)  # MIN,MAX of the autoscaling actor pool
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    rows_per_file: int = 100_000  # Parquet rows per output file (at most)
    row_group_rows: int = 10_000
    commit_bytes: int = 64 * 2**20  # read blocks are embedded and committed in groups of about this many bytes
    block_bytes: int = DEFAULT_BLOCK_BYTES  # the largest read block (smaller ones spread a small corpus)
    min_block_bytes: int = MIN_BLOCK_BYTES  # … but read blocks are not made smaller than this
    read_cpus: float | None = None  # CPUs per read task (None: min(0.25, cpus_per_actor))
    wait_for_nodes_s: float = 0.0  # how long to wait for an autoscaler to add nodes the pool needs (0: fail at once)
    stall_warning_s: float = 120.0  # print what the job waits for after this long without new output (0: never)
    lease_ttl_s: float = 120.0  # the run's lease on the output expires this long after its last renewal
    wait_s: float = 0.0  # how long to wait for another run's lease on the output (0: fail at once)
    replace: bool = False  # re-embed every input with this run's model and settings, in one switch
    prune: bool = False  # drop the rows of inputs no longer listed under --input
    ingest: IngestConfig = field(default_factory=IngestConfig)

    def spec(self) -> OutputSpec:
        return OutputSpec(self.layers, self.pooling, self.dtype)

    def validate(self) -> None:
        if not self.model or not self.inputs or not self.output:
            raise ElmoError("elmo embed needs --model, at least one --input and --output")
        if len(self.actors) != 2 or not 1 <= self.actors[0] <= self.actors[1]:
            raise ElmoError(f"--actors must be MIN,MAX with 1 ≤ MIN ≤ MAX, got {self.actors}")
        if self.batch_size < 1 or (self.sub_batch is not None and self.sub_batch < 1):
            raise ElmoError("--batch-size and sub_batch must be positive")
        if self.layout not in ("sentence", "token") or (self.layout == "token" and self.pooling != "none"):
            raise ElmoError(f"--layout must be sentence or token (token only with --pooling none), got "
                            f"{self.layout!r} with --pooling {self.pooling}")
        if self.precision not in PRECISION_CHOICES:
            raise ElmoError(f"--precision must be one of {PRECISION_CHOICES}, got {self.precision!r}")
        if self.commit_bytes < 1 or self.lease_ttl_s < 1 or self.wait_s < 0:
            raise ElmoError("commit_bytes and lease_ttl_s must be positive (lease_ttl_s ≥ 1 s), --wait ≥ 0")
        if self.block_bytes < 1 or self.min_block_bytes < 1:
            raise ElmoError(f"block_bytes and min_block_bytes must be positive, got {self.block_bytes} "
                            f"and {self.min_block_bytes}")
        if self.cpus_per_actor <= 0 or self.gpus_per_actor < 0 or (self.read_cpus is not None and self.read_cpus <= 0):
            raise ElmoError("--cpus-per-actor and read_cpus must be positive, --gpus-per-actor ≥ 0")
        if self.wait_for_nodes_s < 0 or self.stall_warning_s < 0:
            raise ElmoError("wait_for_nodes_s and stall_warning_s must be ≥ 0")
        self.spec()

    @property
    def read_task_cpus(self) -> float:
        """CPUs per read task: fits on any node that fits an actor."""
        return self.read_cpus if self.read_cpus is not None else min(DEFAULT_READ_CPUS, self.cpus_per_actor)

    def pool_needs(self) -> PoolNeeds:
        return PoolNeeds(self.actors[0], self.cpus_per_actor, self.gpus_per_actor, self.read_task_cpus)


@dataclass
class EmbedResult:
    embedded: list[str]  # input URLs embedded by this run
    skipped: int  # inputs already up to date
    rows: int
    output_url: str
    commits: int = 0  # groups committed by this run
    blocks: int = 0  # read blocks embedded by this run


def binding(config: EmbedJobConfig, model_hash: str, model_files: dict[str, str] | None = None) -> dict:
    """What an output is bound to: one model and one set of output settings (the manifest's
    ``binding``), with the model files' fingerprints (a no-op rerun needs not read the weights)."""
    bound = {"settings_hash": settings_hash(config, model_hash), "model": model_hash, "precision": config.precision,
             "layout": config.layout, **dataclasses.asdict(config.spec())}
    if model_files:
        bound["model_files"] = model_files
    return bound


def model_file_fingerprints(model_url: str, options: StorageOptions | None) -> dict[str, str] | None:
    """Size + ETag/mtime of the model's two files (None for http(s) models or when a file is missing)."""
    from pipelines.io.storage import join_url, list_files

    if model_url.startswith(("http://", "https://")):
        return None
    found = {}
    for name in ("options.json", "weights.hdf5"):
        try:
            entries = list_files(join_url(model_url, name, options), options)
        except ElmoError:
            return None
        if len(entries) != 1:
            return None
        found[name] = manifest.input_fingerprint(entries[0])
    return found


def _up_to_date_without_loading(config: EmbedJobConfig, out: Location, entries: list[FileEntry],
                                model_files: dict[str, str] | None) -> bool:
    """A no-op rerun decided from the manifest alone: the output is bound to these very model files
    (same fingerprints) and settings, and every input is committed and unchanged. Read-only."""
    if not model_files or config.replace:
        return False
    try:
        state = manifest.read_state(out)
    except ElmoError:
        return False
    bound = state.binding or {}
    if bound.get("model_files") != model_files or not bound.get("model"):
        return False
    if config.precision == "auto":  # auto keeps the output's precision: no device to ask
        kept = auto_from_binding(bound)
        if kept is None:
            return False
        config = dataclasses.replace(config, precision=kept)
    settings = settings_hash(config, bound["model"])
    gone = config.prune and any(url not in {e.url for e in entries} for url in state.inputs)
    if bound.get("settings_hash") != settings or gone or manifest.plan(entries, state.inputs, settings):
        return False
    return not any(manifest.leftovers(out, state))  # else the full path recovers what earlier runs left


def _describe(bound: dict) -> str:
    if "model" not in bound:
        return ("vectors of several models or settings" if bound["settings_hash"] == "mixed"
                else f"vectors of settings {bound['settings_hash']} (written by an earlier version)")
    return (f"vectors of model {bound['model']} (layers {bound['layers']}, pooling {bound['pooling']}, "
            f"dtype {bound['dtype']}, precision {bound['precision']}, layout {bound.get('layout', 'sentence')})")


def check_binding(out_url: str, state: manifest.ManifestState, mine: dict, replace: bool) -> None:
    """One model per output: a run with another model or other output settings stops (exit 2)
    unless it replaces everything."""
    bound = manifest.binding_of(state)
    if bound is None or bound["settings_hash"] == mine["settings_hash"]:
        return
    if replace:
        log.warning("%s: --replace: replacing %s with %s", out_url, _describe(bound), _describe(mine))
        return
    raise ElmoError(f"{out_url}: holds {_describe(bound)}; this run would add {_describe(mine)}. "
                    "An output holds one model's vectors: use another --output, or --replace to re-embed "
                    "every input with this run's model")


def settings_hash(config: EmbedJobConfig, model_hash: str) -> str:
    """What makes old outputs stale besides the input itself: the model and the output settings."""
    relevant = {"model": model_hash, "spec": dataclasses.asdict(config.spec()),
                "ingest": dataclasses.asdict(config.ingest)}
    if config.precision != "fp32":  # fp32 runs keep the hashes (and outputs) of earlier versions
        relevant["precision"] = config.precision
    if config.layout != "sentence":  # … and so do runs of the per-sentence layout
        relevant["layout"] = config.layout
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def _only(plan: InputPlan, urls: set[str]) -> InputPlan:
    return InputPlan(tuple(f for f in plan.files if f.url in urls), plan.filesystems)


def _add_output_key(batch: pa.Table) -> pa.Table:
    keys = [manifest.output_key(url) for url in batch.column("source").to_pylist()]
    return batch.append_column("output_key", pa.array(keys, pa.string()))


def check_output_outside_inputs(out_url: str, inputs: tuple[str, ...], options: StorageOptions | None) -> None:
    """An output inside an input prefix (or an input inside the output) would read its own Parquet
    as input on the next run: refused before any work."""
    out = out_url.rstrip("/")
    for raw in inputs:
        url = resolve(raw, options).url.rstrip("/")
        if out == url or out.startswith(url + "/") or url.startswith(out + "/"):
            raise ElmoError(f"--output {out_url} is inside --input {url} (or holds it): the next run would read "
                            "its own vectors as input; choose an output outside the inputs")


def check_model(config: EmbedJobConfig, options: StorageOptions | None) -> str:
    """Load the model once on the driver (bad files fail here, before any output) → its digest."""
    from pipelines.io.model_store import load_model

    model = load_model(config.model, options)
    weights = config.spec().mix_weights()
    if weights is not None and len(weights) != model.options.n_layers + 1:
        raise ElmoError(f"--layers {config.layers!r} gives {len(weights)} weights; the model at "
                        f"{config.model} has {model.options.n_layers + 1} layers")
    return model.digest


def group_blocks(todo: list[ReadBlock], commit_bytes: int) -> list[list[ReadBlock]]:
    """Consecutive read blocks (in plan order) in groups of at least ``commit_bytes`` (the last may be smaller)."""
    groups: list[list[ReadBlock]] = [[]]
    size = 0
    for block in todo:
        if size >= commit_bytes:
            groups.append([])
            size = 0
        groups[-1].append(block)
        size += block.size
    return [g for g in groups if g]


def plan_todo_blocks(config: EmbedJobConfig, plan: InputPlan, todo: list[FileEntry],
                     records: dict[str, manifest.InputRecord], settings: str) -> tuple[list[ReadBlock], dict[str, list[str]]]:
    """The read blocks still to embed (partly committed inputs keep their recorded plan) and every
    todo input's whole plan (its block keys)."""
    from pipelines.ingest.reader import plan_read_blocks

    resumed = {e.url: records[e.url] for e in todo if e.url in records and records[e.url].continues(e, settings)}
    fresh_bytes = sum(e.size for e in todo if e.url not in resumed)
    wanted = min(max(fresh_bytes, 1), config.commit_bytes)  # every actor gets several blocks of each group
    target = block_size(wanted, 4 * config.actors[1], config.block_bytes, config.min_block_bytes)
    planned = plan_read_blocks(_only(plan, {e.url for e in todo}), target, {u: r.parts for u, r in resumed.items()})
    plans: dict[str, list[str]] = {}
    for block in planned:
        plans.setdefault(block.url, []).append(block.key)
    done = {(u, k) for u, r in resumed.items() for k in r.done}
    return [b for b in planned if (b.url, b.key) not in done], plans


def run_embed(config: EmbedJobConfig, options: StorageOptions | None = None) -> EmbedResult:
    """Embed the new or changed inputs of ``config`` and commit them under ``config.output``."""
    from pipelines.embed.placement import check_placement
    from pipelines.ingest.reader import number_read_blocks
    from pipelines.ray_support import ensure_ray

    config.validate()
    faults = fault_injection.planned()
    entries, plan = list_inputs(config.inputs, config.ingest, options)
    out = resolve(config.output, options)
    check_output_outside_inputs(out.url, config.inputs, options)
    check_output(out.url, options)
    model_files = model_file_fingerprints(config.model, options)
    if _up_to_date_without_loading(config, out, entries, model_files):
        log.info("all %d inputs are up to date under %s (same model files): nothing to do", len(entries), out.url)
        return EmbedResult([], len(entries), 0, out.url)
    digest = check_model(config, options)  # the weights are checked before any new embedding
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    with RunLease(out, run_id, config.lease_ttl_s, on_lost=_thread.interrupt_main).acquire(config.wait_s) as lease, \
            _stop_when_lost(lease):
        state = manifest.recover(out, run_id)
        config = dataclasses.replace(config, precision=resolve_run_precision(
            config.precision, manifest.binding_of(state), config.replace, config.cpus_per_actor,
            config.gpus_per_actor, out.url))
        settings = settings_hash(config, digest)
        bound = binding(config, digest, model_files)
        check_binding(out.url, state, bound, config.replace)
        listed = {e.url for e in entries}
        gone = [url for url in state.inputs if url not in listed]
        todo = list(entries) if config.replace else manifest.plan(entries, state.inputs, settings)
        if not config.replace and gone and config.prune:
            state = manifest.commit(out, state, f"{run_id}-prune", out.join(manifest.STAGING, run_id), [], {}, {},
                                    settings, binding=bound, drop=gone)
            log.info("pruned the rows of %d input(s) no longer listed", len(gone))
        elif gone and not config.replace:
            log.info("%d input(s) embedded earlier are no longer listed; their rows stay (--prune drops them)",
                     len(gone))
        if not todo:
            log.info("all %d inputs are up to date under %s: nothing to do", len(entries), out.url)
            return EmbedResult([], len(entries), 0, out.url)
        ensure_ray()
        check_placement(config.pool_needs(), config.wait_for_nodes_s)
        remaining, plans = plan_todo_blocks(config, plan, todo, {} if config.replace else state.inputs, settings)
        numbered = number_read_blocks(remaining, plan, plans, config.read_task_cpus)
        groups = group_blocks(numbered, config.commit_bytes)
        by_url = {e.url: e for e in todo}
        total = 0
        try:
            if config.replace:  # everything staged first, then one commit: readers never see two models
                total = _replace_all(config, out, state, run_id, groups, plan, plans, by_url, digest, bound, options,
                                     faults, lease)
                return EmbedResult([e.url for e in todo], 0, total, out.url, 1, len(numbered))
            for k, group in enumerate(groups):
                staging, inputs, staged, rows = _stage_group(config, out, run_id, k, group, plan, by_url, digest,
                                                             options, faults)
                _check_completed_inputs(state, group, plans, rows, settings, by_url)
                fault_injection.crash_before_commit(faults, k + 1)
                lease.check()
                keys = {e.url: [b.key for b in group if b.url == e.url] for e in inputs}
                state = manifest.commit(out, state, f"{run_id}-{k:05d}", staging, inputs, staged, rows, settings,
                                        keys, plans, binding=bound)
                total += sum(rows.values())
                if len(groups) > 1:
                    log.info("committed group %d/%d: %d read block(s) of %d input(s), %d sentences", k + 1,
                             len(groups), len(group), len(inputs), sum(rows.values()))
        finally:  # empty folders on a local output; this run's uncommitted files after an error
            with contextlib.suppress(Exception):  # (otherwise the next run removes them)
                remove_tree(out.join(manifest.STAGING, run_id))
    return EmbedResult([e.url for e in todo], len(entries) - len(todo), total, out.url, len(groups), len(numbered))


@contextlib.contextmanager
def _stop_when_lost(lease: RunLease) -> Iterator[None]:
    """A lost lease interrupts the main thread (``on_lost``): end the run with the lease's one line."""
    try:
        yield
    except KeyboardInterrupt:
        if lease.lost_reason is None:
            raise
        raise LeaseLost(lease.lost_reason) from None


def _replace_all(config: EmbedJobConfig, out: Location, state: manifest.ManifestState, run_id: str,
                 groups: list[list[ReadBlock]], plan: InputPlan, plans: dict[str, list[str]],
                 by_url: dict[str, FileEntry], digest: str, bound: dict, options: StorageOptions | None,
                 faults: fault_injection.Faults, lease: object) -> int:
    """``--replace``: stage every group, then commit them all at once (every earlier row deleted,
    inputs no longer listed included); a crash before that commit leaves the output as it was."""
    staged: dict[str, list[str]] = {}
    rows: dict[str, int] = {}
    for k, group in enumerate(groups):
        _, _, group_staged, group_rows = _stage_group(config, out, run_id, k, group, plan, by_url, digest, options,
                                                      faults)
        for url in group_staged:
            staged.setdefault(url, []).extend(group_staged[url])
            rows[url] = rows.get(url, 0) + group_rows[url]
        log.info("staged group %d/%d for the replacement", k + 1, len(groups))
    check_sentences({url: rows.get(url, 0) for url in by_url})
    fault_injection.crash_before_commit(faults, 1)
    lease.check()  # type: ignore[attr-defined]
    manifest.commit(out, state, f"{run_id}-replace", out.join(manifest.STAGING, run_id), list(by_url.values()),
                    staged, rows, bound["settings_hash"], binding=bound, replace_all=True)
    return sum(rows.values())


def _stage_group(config: EmbedJobConfig, out: Location, run_id: str, k: int, group: list[ReadBlock],
                 plan: InputPlan, by_url: dict[str, FileEntry], digest: str, options: StorageOptions | None,
                 faults: fault_injection.Faults) -> tuple[Location, list[FileEntry], dict[str, list[str]], dict[str, int]]:
    """Embed group ``k`` into ``_staging/<run>/g<k>/``: its folder, its inputs, their staged files and rows."""
    staging = out.join(manifest.STAGING, run_id, f"g{k:05d}")
    inputs = [by_url[u] for u in dict.fromkeys(b.url for b in group)]
    _embed_to_staging(config, group, plan, staging, digest, options, faults)
    staged, rows = _staged_outputs(out, staging, inputs)
    return staging, inputs, staged, rows


def _check_completed_inputs(state: manifest.ManifestState, group: list[ReadBlock], plans: dict[str, list[str]],
                            rows: dict[str, int], settings: str, by_url: dict[str, FileEntry]) -> None:
    """An input whose last block is in ``group`` and that has no sentences in all: an error naming it
    (nothing of the group committed)."""
    counts = {}
    for url in dict.fromkeys(b.url for b in group):
        record = state.inputs.get(url)
        continuing = record is not None and record.continues(by_url[url], settings)
        done = set(record.done if continuing else ()) | {b.key for b in group if b.url == url}
        if set(plans[url]) <= done:
            counts[url] = rows.get(url, 0) + (record.rows if continuing else 0)
    check_sentences(counts)


def _staging_files(staging: Location) -> int:
    return len(staging.fs.find(staging.path)) if staging.fs.exists(staging.path) else 0


def _embed_to_staging(config: EmbedJobConfig, group: list[ReadBlock], plan: InputPlan, staging: Location,
                      digest: str, options: StorageOptions | None, faults: fault_injection.Faults) -> None:
    from pipelines.embed.actor import EmbedActor
    from pipelines.embed.placement import StallWatch
    from pipelines.ingest.reader import SentenceStage, read_blocks, sentences_of
    from pipelines.ray_support import actor_pool, clean_errors

    read_cpus = config.read_task_cpus
    stage = SentenceStage(config.ingest, char_ids=False)
    sentences = sentences_of(read_blocks(group, plan, config.ingest, read_cpus), stage, read_cpus)
    keyed = sentences.map_batches(_add_output_key, batch_format="pyarrow", batch_size=None,
                                  num_cpus=read_cpus, memory=READ_TASK_MEMORY)  # fused into the read tasks
    vectors = keyed.map_batches(
        EmbedActor,
        fn_constructor_kwargs=dict(model_url=config.model, spec=config.spec(), model_hash=digest,
                                   sub_batch=config.sub_batch, precision=config.precision, storage=options, faults=faults,
                                   layout=config.layout),
        compute=actor_pool(*config.actors),
        batch_size=config.batch_size, batch_format="pyarrow", num_cpus=config.cpus_per_actor,
        num_gpus=config.gpus_per_actor or None)  # Ray Data restarts dead actors and retries their tasks
    watch = StallWatch(lambda: _staging_files(staging), config.pool_needs(), config.stall_warning_s)
    try:
        with clean_errors(), watch:
            vectors.write_parquet(staging.path, filesystem=staging.arrow_fs, partition_cols=["output_key"],
                                  try_create_dir=staging.scheme == "file",  # no empty marker objects on S3
                                  max_rows_per_file=config.rows_per_file, row_group_size=config.row_group_rows,
                                  # a write task asks what a read task asks, so it fits beside an actor
                                  # (Ray's default, 1 CPU, waits for the pool to let go of its nodes)
                                  ray_remote_args={"num_cpus": read_cpus})
    except ElmoError:
        raise
    except Exception as exc:  # a full disk: one line (Ray's traceback and its "open an issue" note, otherwise)
        from pipelines.io.storage import no_space

        if no_space(exc):
            raise ElmoError(f"{staging.url}: cannot write: no space left on device; nothing of this group was "
                            "committed (free space and rerun: committed groups are kept)") from None
        raise


def _staged_outputs(out: Location, staging: Location, todo: list[FileEntry]) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Staged files per input URL (relative to the output URL) and their row counts."""
    import pyarrow.parquet as pq

    by_key = {manifest.output_key(e.url): e.url for e in todo}
    staged: dict[str, list[str]] = {url: [] for url in by_key.values()}
    rows: dict[str, int] = dict.fromkeys(by_key.values(), 0)
    found = staging.fs.find(staging.path) if staging.fs.exists(staging.path) else []
    for path in found:
        relative = path[len(out.path):].lstrip("/")
        partition = next((p for p in relative.split("/") if p.startswith("output_key=")), None)
        if partition is None or not path.endswith(".parquet"):
            continue
        url = by_key[partition.split("=", 1)[1]]
        staged[url].append(relative)
        with out.arrow_fs.open_input_file(path) as handle:
            rows[url] += pq.read_metadata(handle).num_rows
    return staged, rows
