"""Clusters of near-duplicates on Ray Data: LSH buckets to edges, edges to connected components.

No step collects the signatures, buckets or edges in one process. Every step is a Ray Data
hash shuffle on a ``partition`` column (a hash of the key, modulo ``partitions``) followed by
one vectorised pyarrow function per partition, so a partition holds every row of each key it
owns and the work spreads over ``partitions`` tasks.

1. :func:`bucket_edges`: rows ``(key, id)``, one per (document, band). Documents that share a
   bucket key are candidates; each bucket gives a star of edges from every member to its
   smallest id, ``(a, b)`` with ``a > b``.
2. :func:`connected_components`: the large-star / small-star algorithm of Kiveris et al.
   ("Connected Components in MapReduce and Beyond", SoCC 2014), alternated until a round
   changes no edge; it takes O(log^2 n) rounds, each two shuffles of the edge list (which
   never grows). At the end every component is a star around its smallest id.

   * large-star, at each node ``u``: link every larger neighbour to the smallest of ``u`` and
     its neighbours;
   * small-star, at each node ``u``: link ``u`` and its smaller neighbours to the smallest of
     them.

   A round changes nothing exactly when every node is a centre (only larger neighbours) or a
   leaf (exactly one neighbour, smaller): the graph is then a set of stars, each centred on its
   component's smallest id. The driver only receives the number of changed edges per round.
3. :func:`component_labels`: ``(id, cluster)`` for every node, the cluster being the centre.

The result depends only on the edges, never on how the data is split into blocks, partitions
or workers. Ids are compared as strings (byte order).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from codeprefs.filters.dedupe.hashing import hash_strings

PARTITION = "partition"
EDGE_SCHEMA = pa.schema([pa.field("a", pa.string()), pa.field("b", pa.string())])
_STAR_SCHEMA = pa.schema([pa.field("a", pa.string()), pa.field("b", pa.string()),
                          pa.field("changed", pa.int64())])
LABEL_SCHEMA = pa.schema([pa.field("id", pa.string()), pa.field("cluster", pa.string())])


class ComponentsError(RuntimeError):
    """Connected components did not converge within the allowed number of rounds."""


def partition_of_strings(values: pa.Array | pa.ChunkedArray, partitions: int) -> pa.Array:
    """The partition of each string key: its deterministic hash modulo ``partitions``."""
    return pa.array((hash_strings(values) % np.uint64(partitions)).astype(np.int32))


def partition_of_keys(keys: np.ndarray, partitions: int) -> pa.Array:
    """The partition of each ``uint64`` bucket key (already a hash)."""
    return pa.array((keys % np.uint64(partitions)).astype(np.int32))


# -- 1. buckets to edges -----------------------------------------------------------------------


def _bucket_star(table: pa.Table) -> pa.Table:
    """Edges from every member of each bucket to its smallest id (one partition of buckets)."""
    table = table.sort_by([("key", "ascending"), ("id", "ascending")])
    keys = table["key"].to_numpy()
    if len(keys) == 0:
        return EDGE_SCHEMA.empty_table()
    first_of_bucket = np.empty(len(keys), dtype=bool)
    first_of_bucket[0] = True
    first_of_bucket[1:] = keys[1:] != keys[:-1]
    first_index = np.maximum.accumulate(np.where(first_of_bucket, np.arange(len(keys)), 0))
    members = np.flatnonzero(~first_of_bucket)
    ids = table["id"]
    edges = pa.table({"a": ids.take(members), "b": ids.take(first_index[members])})
    edges = edges.filter(pc.not_equal(edges["a"], edges["b"]))  # a document twice in one bucket
    return _distinct(edges).cast(EDGE_SCHEMA)


def bucket_edges(band_rows, partitions: int):
    """Dataset of ``(key, id, partition)`` band rows -> dataset of star edges ``(a, b)``."""
    return band_rows.groupby(PARTITION, num_partitions=partitions).map_groups(
        _bucket_star, batch_format="pyarrow")


# -- 2. connected components --------------------------------------------------------------------


def _distinct(table: pa.Table) -> pa.Table:
    return table.group_by(table.column_names, use_threads=False).aggregate([])


def _both_directions(edges: pa.Table, partitions: int) -> pa.Table:
    node = pa.concat_arrays([edges["a"].combine_chunks(), edges["b"].combine_chunks()])
    neighbour = pa.concat_arrays([edges["b"].combine_chunks(), edges["a"].combine_chunks()])
    return pa.table({"node": node, "neighbour": neighbour,
                     PARTITION: partition_of_strings(node, partitions)})


def _larger_to_smaller(edges: pa.Table, partitions: int) -> pa.Table:
    node = edges["a"].combine_chunks()
    return pa.table({"node": node, "neighbour": edges["b"].combine_chunks(),
                     PARTITION: partition_of_strings(node, partitions)})


def _with_smallest_neighbour(table: pa.Table) -> pa.Table:
    """Distinct (node, neighbour) rows with the node's smallest neighbour as ``smallest``."""
    table = _distinct(table.select(["node", "neighbour"]))
    smallest = table.group_by("node", use_threads=False).aggregate([("neighbour", "min")])
    return table.join(smallest.rename_columns(["node", "smallest"]), "node", use_threads=False)


def _large_star(table: pa.Table) -> pa.Table:
    """Large-star on one partition of ``(node, neighbour)`` rows in both directions."""
    if table.num_rows == 0:
        return _STAR_SCHEMA.empty_table()
    table = _with_smallest_neighbour(table)
    node, neighbour, smallest = table["node"], table["neighbour"], table["smallest"]
    centre = pc.if_else(pc.less(smallest, node), smallest, node)
    larger = pc.greater(neighbour, node)
    changed = pc.cast(pc.not_equal(centre, node), pa.int64())
    out = pa.table({"a": neighbour, "b": centre, "changed": changed}).filter(larger)
    return out.cast(_STAR_SCHEMA)


def _small_star(table: pa.Table) -> pa.Table:
    """Small-star on one partition of ``(node, smaller neighbour)`` rows."""
    if table.num_rows == 0:
        return _STAR_SCHEMA.empty_table()
    table = _with_smallest_neighbour(table)
    neighbour, smallest = table["neighbour"], table["smallest"]
    moved = pc.not_equal(neighbour, smallest)
    relinked = pa.table({"a": neighbour, "b": smallest}).filter(moved)
    relinked = relinked.append_column("changed", pa.array(np.ones(relinked.num_rows, np.int64)))
    nodes = _distinct(table.select(["node", "smallest"])).rename_columns(["a", "b"])
    nodes = nodes.append_column("changed", pa.array(np.zeros(nodes.num_rows, np.int64)))
    return pa.concat_tables([relinked.cast(_STAR_SCHEMA), nodes.cast(_STAR_SCHEMA)])


def _count_changed(batch: pa.Table) -> pa.Table:
    return pa.table({"changed": [pc.sum(batch["changed"]).as_py() or 0]})


def _total_changed(dataset) -> int:
    return sum(row["changed"] for row in dataset.map_batches(_count_changed, batch_format="pyarrow").take_all())


def _star_step(edges, prepare, star, partitions: int):
    return (
        edges.map_batches(prepare, fn_kwargs={"partitions": partitions}, batch_format="pyarrow")
        .groupby(PARTITION, num_partitions=partitions)
        .map_groups(star, batch_format="pyarrow")
        .materialize()
    )


def connected_components(edges, partitions: int, max_rounds: int = 64):
    """Edges ``(a, b)`` with ``a > b`` -> the same components as stars around their minimum.

    Returns ``(star edges, rounds)``; raises :class:`ComponentsError` after ``max_rounds``.
    """
    for round_number in range(1, max_rounds + 1):
        large = _star_step(edges, _both_directions, _large_star, partitions)
        small = _star_step(large, _larger_to_smaller, _small_star, partitions)
        changed = _total_changed(large.union(small))
        edges = small.select_columns(["a", "b"])
        if changed == 0:
            return edges, round_number
    raise ComponentsError(f"connected components did not converge in {max_rounds} rounds")


# -- 3. labels ----------------------------------------------------------------------------------


def _label_rows(edges: pa.Table, partitions: int) -> pa.Table:
    """(leaf, centre) and (centre, centre) for every star edge."""
    node = pa.concat_arrays([edges["a"].combine_chunks(), edges["b"].combine_chunks()])
    cluster = pa.concat_arrays([edges["b"].combine_chunks(), edges["b"].combine_chunks()])
    return pa.table({"id": node, "cluster": cluster, PARTITION: partition_of_strings(node, partitions)})


def _distinct_labels(table: pa.Table) -> pa.Table:
    return _distinct(table.select(["id", "cluster"])).cast(LABEL_SCHEMA)


def component_labels(stars, partitions: int):
    """Converged star edges -> ``(id, cluster)``, one row per node; ``cluster`` is the centre."""
    return (
        stars.map_batches(_label_rows, fn_kwargs={"partitions": partitions}, batch_format="pyarrow")
        .groupby(PARTITION, num_partitions=partitions)
        .map_groups(_distinct_labels, batch_format="pyarrow")
    )
