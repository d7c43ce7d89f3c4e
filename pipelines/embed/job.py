"""``elmo embed``: contextual vectors for a corpus, on a Ray actor pool, written as Parquet.

    lease on the output (pipelines.embed.lease) → recovery of what earlier runs left →
    inputs (listed, fingerprinted) → manifest says which are new/changed → groups of inputs
    (``commit_bytes``), each: Ray Data reads them → EmbedActor pool (model loaded once per actor)
    → Parquet under <output>/_staging/<run>/<group>/ → commit (pipelines.embed.manifest): manifest
    compare-and-swap, files moved into <output>/<input key>/.

A rerun with nothing new does nothing; a crash loses at most the group in progress (the next run
removes its staging and embeds only what was not committed); a changed input's old files are
replaced; a second run on the same output waits for the lease or stops (exit status 75).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa

from elmo_model.errors import ElmoError
from elmo_model.precision import PRECISIONS
from pipelines import fault_injection
from pipelines.embed import manifest
from pipelines.embed.output import OutputSpec
from pipelines.ingest.reader import IngestConfig, InputPlan, check_sentences, list_inputs
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
    dtype: Literal["float32", "float16"] = "float32"
    batch_size: int = 256  # sentences per actor call
    sub_batch: int | None = None  # sentences per forward pass in the actor (None: measured per model shape)
    precision: str = "fp32"  # fp32 | bf16 | int8 (elmo_model.precision; not exact, error in the README)
    actors: tuple[int, ...] = (1, 2)  # MIN,MAX of the autoscaling actor pool
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    rows_per_file: int = 100_000  # Parquet rows per output file (at most)
    row_group_rows: int = 10_000
    commit_bytes: int = 64 * 2**20  # inputs are embedded and committed in groups of about this many bytes
    lease_ttl_s: float = 120.0  # the run's lease on the output expires this long after its last renewal
    wait_s: float = 0.0  # how long to wait for another run's lease on the output (0: fail at once)
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
        if self.precision not in PRECISIONS:
            raise ElmoError(f"--precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.commit_bytes < 1 or self.lease_ttl_s < 1 or self.wait_s < 0:
            raise ElmoError("commit_bytes and lease_ttl_s must be positive (lease_ttl_s ≥ 1 s), --wait ≥ 0")
        self.spec()


@dataclass
class EmbedResult:
    embedded: list[str]  # input URLs embedded by this run
    skipped: int  # inputs already up to date
    rows: int
    output_url: str
    commits: int = 0  # groups committed by this run


def settings_hash(config: EmbedJobConfig, model_hash: str) -> str:
    """What makes old outputs stale besides the input itself: the model and the output settings."""
    relevant = {"model": model_hash, "spec": dataclasses.asdict(config.spec()),
                "ingest": dataclasses.asdict(config.ingest)}
    if config.precision != "fp32":  # fp32 runs keep the hashes (and outputs) of earlier versions
        relevant["precision"] = config.precision
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def _only(plan: InputPlan, urls: set[str]) -> InputPlan:
    return InputPlan(tuple(f for f in plan.files if f.url in urls), plan.filesystems)


def _add_output_key(batch: pa.Table) -> pa.Table:
    keys = [manifest.output_key(url) for url in batch.column("source").to_pylist()]
    return batch.append_column("output_key", pa.array(keys, pa.string()))


def check_model(config: EmbedJobConfig, options: StorageOptions | None) -> str:
    """Load the model once on the driver (bad files fail here, before any output) → its digest."""
    from pipelines.io.model_store import load_model

    model = load_model(config.model, options)
    weights = config.spec().mix_weights()
    if weights is not None and len(weights) != model.options.n_layers + 1:
        raise ElmoError(f"--layers {config.layers!r} gives {len(weights)} weights; the model at "
                        f"{config.model} has {model.options.n_layers + 1} layers")
    return model.digest


def group_inputs(todo: list[FileEntry], commit_bytes: int) -> list[list[FileEntry]]:
    """Consecutive inputs (by URL) in groups of at least ``commit_bytes`` (the last may be smaller)."""
    groups: list[list[FileEntry]] = [[]]
    size = 0
    for entry in sorted(todo, key=lambda e: e.url):
        if size >= commit_bytes:
            groups.append([])
            size = 0
        groups[-1].append(entry)
        size += entry.size
    return [g for g in groups if g]


def run_embed(config: EmbedJobConfig, options: StorageOptions | None = None) -> EmbedResult:
    """Embed the new or changed inputs of ``config`` and commit them under ``config.output``."""
    from pipelines.embed.lease import RunLease

    config.validate()
    faults = fault_injection.planned()
    entries, plan = list_inputs(config.inputs, config.ingest, options)
    out = resolve(config.output, options)
    check_output(out.url, options)
    digest = check_model(config, options)
    settings = settings_hash(config, digest)
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    with RunLease(out, run_id, config.lease_ttl_s).acquire(config.wait_s) as lease:
        state = manifest.recover(out, run_id)
        todo = manifest.plan(entries, state.inputs, settings)
        if not todo:
            log.info("all %d inputs are up to date under %s: nothing to do", len(entries), out.url)
            return EmbedResult([], len(entries), 0, out.url)
        groups = group_inputs(todo, config.commit_bytes)
        total = 0
        try:
            for k, group in enumerate(groups):
                staging = out.join(manifest.STAGING, run_id, f"g{k:05d}")
                _embed_to_staging(config, _only(plan, {e.url for e in group}), staging, digest, options, faults)
                staged, rows = _staged_outputs(out, staging, group)
                check_sentences(rows)  # an input without sentences: an error naming it, nothing of the group committed
                fault_injection.crash_before_commit(faults)
                lease.check()
                state = manifest.commit(out, state, f"{run_id}-{k:05d}", staging, group, staged, rows, settings)
                total += sum(rows.values())
                if len(groups) > 1:
                    log.info("committed group %d/%d: %d input(s), %d sentences", k + 1, len(groups),
                             len(group), sum(rows.values()))
        finally:  # empty folders on a local output; this run's uncommitted files after an error
            with contextlib.suppress(Exception):  # (otherwise the next run removes them)
                remove_tree(out.join(manifest.STAGING, run_id))
    return EmbedResult([e.url for g in groups for e in g], len(entries) - len(todo), total, out.url, len(groups))


def _embed_to_staging(config: EmbedJobConfig, plan: InputPlan, staging: Location, digest: str,
                      options: StorageOptions | None, faults: fault_injection.Faults) -> None:
    from pipelines.embed.actor import EmbedActor
    from pipelines.ingest.reader import read_sentences
    from pipelines.ray_support import actor_pool, clean_errors, ensure_ray

    ensure_ray()
    sentences = read_sentences(plan, config.ingest, options=options, char_ids=False)
    keyed = sentences.map_batches(_add_output_key, batch_format="pyarrow", batch_size=None)
    vectors = keyed.map_batches(
        EmbedActor,
        fn_constructor_kwargs=dict(model_url=config.model, spec=config.spec(), model_hash=digest,
                                   sub_batch=config.sub_batch, precision=config.precision, storage=options, faults=faults),
        compute=actor_pool(*config.actors),
        batch_size=config.batch_size, batch_format="pyarrow", num_cpus=config.cpus_per_actor,
        num_gpus=config.gpus_per_actor or None)  # Ray Data restarts dead actors and retries their tasks
    with clean_errors():
        vectors.write_parquet(staging.path, filesystem=staging.arrow_fs, partition_cols=["output_key"],
                              try_create_dir=staging.scheme == "file",  # no empty marker objects on S3
                              max_rows_per_file=config.rows_per_file, row_group_size=config.row_group_rows)


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
