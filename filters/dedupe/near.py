"""Near-dedupe of preference rows with MinHash LSH on Ray Data.

:func:`near_dedupe` takes and returns a Ray dataset of rows with
:data:`codeprefs.core.rows.WORK_SCHEMA`; it never filters rows out. Only rows not yet dropped and
with at least one token in the configured fields take part:

1. signatures (:class:`BandRows`, parallel map tasks): each row's configured fields
   (``chosen`` and ``rejected`` by default) form one shingle set of token n-grams, each field
   salted apart; its MinHash signature is cut into ``bands`` bands of ``rows`` values and each
   band hashed to a bucket key; one ``(key, id)`` row per band leaves the task;
2. candidate edges from shared buckets, optionally verified by true Jaccard similarity
   (:func:`verified_edges`), then connected components
   (:mod:`codeprefs.filters.dedupe.components`);
3. a join of the rows with their cluster labels: every row in a cluster of two or more rows
   gets the cluster id in ``dedupe_cluster``; each cluster keeps its representative, the row
   with the lowest ``id`` (the cluster id is that id), and every other member is marked
   dropped at stage ``dedupe`` with reason ``near_duplicate``.

Rows whose fields are identical (exact duplicates in those fields, including rows with the
same ``dedupe_key``) have identical signatures, so they fall into one cluster and are counted
here as ``near_duplicate``; the writer's exact dedupe then only sees their representative and
counts nothing twice. Rows without any token are left to the writer's exact dedupe.

Clusters are connected components, so similarity chains (A~B, B~C) join A and C even when
A and C are less similar than the threshold. With ``verify_jaccard`` (the default) each
candidate edge (a row and the smallest id of a shared bucket) is kept only if its exact Jaccard
similarity of shingle sets reaches the threshold: LSH alone also merges look-alikes under the
threshold (on real code most removed rows were such look-alikes at Jaccard ~0.69, see
``benchmarks/bench_dedupe.py``); ``verify_jaccard: false`` keeps the unverified behaviour.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from codeprefs.core.drops import DEDUPE, mark_dropped
from codeprefs.filters.dedupe.components import (
    PARTITION,
    bucket_edges,
    component_labels,
    connected_components,
    partition_of_keys,
)
from codeprefs.filters.dedupe.lsh import band_keys, choose_bands
from codeprefs.filters.dedupe.minhash import MinHasher
from codeprefs.filters.dedupe.ngrams import jaccard, ngram_set
from codeprefs.filters.dedupe.settings import NearDedupeSettings
from codeprefs.core.rows import WORK_SCHEMA

NEAR_DUPLICATE = DEDUPE.reason("near_duplicate")
BAND_ROW_SCHEMA = pa.schema([pa.field("key", pa.uint64()), pa.field("id", pa.string()),
                             pa.field(PARTITION, pa.int32())])
_CLUSTER = "_near_cluster"
_BAND_ROWS_PER_PARTITION = 2_000_000


def bands_and_rows(config: NearDedupeSettings) -> tuple[int, int]:
    """The configured ``(bands, rows)``, or the ones :func:`choose_bands` picks."""
    if config.bands is not None and config.rows is not None:
        return config.bands, config.rows
    return choose_bands(config.threshold, config.num_perm)


def live_rows(batch: pa.Table) -> pa.Table:
    """The rows of ``batch`` not dropped by an earlier stage."""
    return batch.filter(pc.is_null(batch["drop_reason"]))


class BandRows:
    """Rows -> one ``(key, id, partition)`` row per band of each live row's signature."""

    def __init__(self, config: NearDedupeSettings, partitions: int, block_shingles: int = 4096) -> None:
        self.fields = list(config.fields)
        self.bands, self.rows = bands_and_rows(config)
        self.seed = config.seed
        self.partitions = partitions
        self.hasher_args = (config.num_perm, config.ngram, config.seed, block_shingles)
        self._hasher: MinHasher | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_hasher": None}  # each worker builds its own buffers

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self._hasher is None:
            self._hasher = MinHasher(*self.hasher_args)
        live = live_rows(batch)
        columns = [live[name].to_pylist() for name in self.fields]
        documents = list(zip(*columns, strict=True)) if columns else []
        signatures, has_shingles = self._hasher.signatures(documents)
        keys = band_keys(signatures[has_shingles], self.bands, self.rows, self.seed).ravel()
        ids = live["id"].filter(pa.array(has_shingles)) if len(has_shingles) else live["id"]
        owners = np.repeat(np.arange(len(ids)), self.bands)
        return pa.table({"key": pa.array(keys, pa.uint64()), "id": ids.take(pa.array(owners)),
                         PARTITION: partition_of_keys(keys, self.partitions)}, schema=BAND_ROW_SCHEMA)


def default_partitions(row_count: int, bands: int) -> int:
    """Shuffle partitions: enough for every CPU of the cluster, and about 2M band rows each."""
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else 1
    return max(1, cpus, min(4096, math.ceil(row_count * bands / _BAND_ROWS_PER_PARTITION)))


class _JaccardCheck:
    """Keep candidate edges whose two rows' shingle sets have Jaccard >= threshold."""

    def __init__(self, fields: list[str], ngram: int, threshold: float) -> None:
        self.fields = fields
        self.ngram = ngram
        self.threshold = threshold

    def __call__(self, batch: pa.Table) -> pa.Table:
        left = [batch[f"a_{name}"].to_pylist() for name in self.fields]
        right = [batch[f"b_{name}"].to_pylist() for name in self.fields]
        keep = []
        for index in range(batch.num_rows):
            left_set = ngram_set([column[index] for column in left], self.ngram)
            right_set = ngram_set([column[index] for column in right], self.ngram)
            keep.append(jaccard(left_set, right_set) >= self.threshold)
        return batch.select(["a", "b"]).filter(pa.array(keep, pa.bool_()))


def _prefixed_texts(batch: pa.Table, fields: list[str], prefix: str) -> pa.Table:
    live = live_rows(batch)
    return pa.table({prefix: live["id"], **{f"{prefix}_{name}": live[name] for name in fields}})


def verified_edges(edges, rows, config: NearDedupeSettings, partitions: int):
    """Candidate edges ``(a, b)`` whose rows' true Jaccard similarity reaches the threshold."""
    fields = list(config.fields)
    texts_a = rows.map_batches(_prefixed_texts, fn_kwargs={"fields": fields, "prefix": "a"},
                               batch_format="pyarrow")
    texts_b = rows.map_batches(_prefixed_texts, fn_kwargs={"fields": fields, "prefix": "b"},
                               batch_format="pyarrow")
    return (
        edges.join(texts_a, "inner", partitions, on=("a",))
        .join(texts_b, "inner", partitions, on=("b",))
        .map_batches(_JaccardCheck(fields, config.ngram, config.threshold), batch_format="pyarrow")
    )


def mark_near_duplicates(batch: pa.Table) -> pa.Table:
    """Rows joined with their cluster label -> cluster id set, non-representatives dropped."""
    cluster = batch[_CLUSTER]
    rows = batch.drop_columns([_CLUSTER])
    in_cluster = pc.is_valid(cluster)
    rows = rows.set_column(rows.schema.get_field_index("dedupe_cluster"), "dedupe_cluster",
                           pc.if_else(in_cluster, cluster, rows["dedupe_cluster"]))
    not_representative = pc.and_(in_cluster, pc.not_equal(rows["id"], cluster))
    rows = mark_dropped(rows, NEAR_DUPLICATE, where=not_representative)
    return rows.select(WORK_SCHEMA.names).cast(WORK_SCHEMA)


def near_dedupe(rows, config: NearDedupeSettings, *, partitions: int | None = None,
                stats: dict[str, Any] | None = None):
    """Mark near-duplicate rows of the Ray dataset ``rows`` (see the module doc).

    Returns the rows, materialised. ``partitions`` overrides the shuffle partitions
    (``config.partitions``, else :func:`default_partitions`); the result does not depend on
    it. ``stats``, if given, receives counts (band rows, candidate and kept edges, clustered
    rows, rounds) and the seconds each phase took.
    """
    stats = stats if stats is not None else {}
    clock = _PhaseClock(stats)
    rows = rows.materialize()  # read three times below; a no-op when already materialised
    row_count = rows.count()
    bands, rows_per_band = bands_and_rows(config)
    partitions = partitions or config.partitions or default_partitions(row_count, bands)
    stats.update(rows=row_count, bands=bands, rows_per_band=rows_per_band, partitions=partitions,
                 band_rows=0, candidate_edges=0, edges=0, clustered_rows=0, rounds=0)
    if row_count == 0:
        return rows
    band_rows = rows.map_batches(BandRows(config, partitions), batch_format="pyarrow").materialize()
    stats["band_rows"] = band_rows.count()
    clock.lap("signatures")
    if stats["band_rows"] == 0:
        return rows
    edges = bucket_edges(band_rows, partitions).materialize()
    stats["candidate_edges"] = edges.count()
    clock.lap("buckets")
    if config.verify_jaccard and stats["candidate_edges"]:
        edges = verified_edges(edges, rows, config, partitions).materialize()
        clock.lap("verify")
    stats["edges"] = edges.count()
    if stats["edges"] == 0:
        return rows
    stars, stats["rounds"] = connected_components(edges, partitions)
    labels = component_labels(stars, partitions).materialize()
    stats["clustered_rows"] = labels.count()
    clock.lap("components")
    marked = (
        rows.join(labels.map_batches(_rename_label, batch_format="pyarrow"), "left_outer", partitions,
                  on=("id",))
        .map_batches(mark_near_duplicates, batch_format="pyarrow")
        .materialize()
    )
    clock.lap("mark")
    return marked


class _PhaseClock:
    """Records the seconds since the previous lap under ``stats["seconds"][phase]``."""

    def __init__(self, stats: dict[str, Any]) -> None:
        self.seconds = stats.setdefault("seconds", {})
        self.last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = round(now - self.last, 3)
        self.last = now


def _rename_label(batch: pa.Table) -> pa.Table:
    return batch.rename_columns(["id", _CLUSTER])
