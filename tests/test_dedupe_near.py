"""Near-dedupe and connected components on a real local Ray instance."""

from __future__ import annotations

import itertools
import random

import pyarrow as pa
import pytest

from codeprefs.filters.dedupe.components import EDGE_SCHEMA, component_labels, connected_components
from codeprefs.filters.dedupe.near import near_dedupe
from codeprefs.filters.dedupe.settings import NearDedupeSettings
from codeprefs.core.rows import WORK_SCHEMA
from tests.dedupe_helpers import (
    LICENSE_HEADER,
    commit_before,
    exact_jaccard,
    pair_row,
    reformat,
    rename_function,
    rows_table,
    small_edit,
    stdlib_functions,
    stdlib_text,
)

pytestmark = pytest.mark.ray

VARIANTS = {"reformat": reformat, "rename": lambda code: rename_function(code, "renamed_helper"),
            "edit": small_edit}


def _row(row_id: str, code: str, **extra) -> dict:
    return pair_row(row_id, code, commit_before(code), **extra)


def planted_corpus() -> tuple[list[dict], list[list[str]], list[str]]:
    """(rows, planted groups of ids, ids that must stay alone).

    Planted groups: a long function and its reformatted, renamed and edited copies (each at
    Jaccard >= 0.88 from the original). Singles: other functions, and short functions that
    share a license header and imports (boilerplate).
    """
    rows: list[dict] = []
    groups: list[list[str]] = []
    singles: list[str] = []
    for index, code in enumerate(stdlib_functions(10, 70, 200)):
        original = _row(f"g{index:02d}-0", code)
        copies = [_row(f"g{index:02d}-{name}", change(code)) for name, change in VARIANTS.items()]
        if all(exact_jaccard(original, copy) >= 0.88 for copy in copies) and len(groups) < 4:
            groups.append([original["id"]] + [copy["id"] for copy in copies])
            rows.extend([original, *copies])
        else:
            singles.append(original["id"])
            rows.append(original)
    for index, code in enumerate(stdlib_functions(8, 20, 35)):
        rows.append(_row(f"b{index:02d}", LICENSE_HEADER + code))
        singles.append(f"b{index:02d}")
    assert len(groups) == 4
    return rows, groups, singles


@pytest.fixture(scope="module")
def corpus():
    rows, groups, singles = planted_corpus()
    by_id = {row["id"]: row for row in rows}
    # Preconditions: singles are far apart, boilerplate included.
    for left, right in itertools.combinations(singles, 2):
        assert exact_jaccard(by_id[left], by_id[right]) < 0.5, (left, right)
    return rows, groups, singles


def _run(ray, rows: list[dict], config: NearDedupeSettings, blocks: int = 3, **kwargs) -> dict[str, dict]:
    dataset = ray.data.from_arrow(rows_table(rows)).repartition(blocks)
    result = near_dedupe(dataset, config, **kwargs).take_all()
    assert len(result) == len(rows)
    return {row["id"]: row for row in result}


def test_planted_near_duplicates_are_found_and_boilerplate_is_kept(ray_local, corpus):
    rows, groups, singles = corpus
    stats: dict = {}
    out = _run(ray_local, rows, NearDedupeSettings(), stats=stats)
    for group in groups:
        representative = min(group)
        assert out[representative]["drop_reason"] is None
        assert out[representative]["dedupe_cluster"] == representative
        for member in group:
            if member != representative:
                assert (out[member]["drop_stage"], out[member]["drop_reason"]) == ("dedupe", "near_duplicate")
                assert out[member]["dedupe_cluster"] == representative
    for single in singles:
        assert out[single]["drop_reason"] is None
        assert out[single]["dedupe_cluster"] is None
    assert stats["clustered_rows"] == sum(len(group) for group in groups)
    assert (stats["bands"], stats["rows_per_band"]) == (21, 12)


def test_exact_copies_and_dropped_rows(ray_local, corpus):
    rows, groups, _ = corpus
    by_id = {row["id"]: row for row in rows}
    original = by_id[groups[0][0]]
    extra = [
        _row("z-copy", original["chosen"]),  # same fields: clustered, counted as near_duplicate
        _row("0-dropped", original["chosen"], drop_stage="validate", drop_reason="too_shallow"),
        pair_row("empty-1", "", ""),  # no token at all: left to the writer's exact dedupe
        pair_row("empty-2", "", ""),
    ]
    out = _run(ray_local, rows + extra, NearDedupeSettings())
    assert out["z-copy"]["drop_reason"] == "near_duplicate"
    assert out["z-copy"]["dedupe_cluster"] == min(groups[0])
    dropped = out["0-dropped"]  # the lowest id of all, but dropped earlier: untouched
    assert (dropped["drop_stage"], dropped["drop_reason"], dropped["dedupe_cluster"]) == (
        "validate", "too_shallow", None)
    assert out["empty-1"]["drop_reason"] is None and out["empty-2"]["drop_reason"] is None


def test_same_clusters_with_one_or_two_workers_and_any_partitioning(ray_local, corpus):
    from ray.data import DataContext
    from ray.data._internal.execution.interfaces import ExecutionResources

    rows, _, _ = corpus
    shuffled = random.Random(7).sample(rows, len(rows))
    context = DataContext.get_current()
    saved = context.execution_options.resource_limits
    outcomes = []
    try:
        for cpus, blocks, partitions in ((1, 1, 1), (2, 5, 3)):
            context.execution_options.resource_limits = ExecutionResources(cpu=cpus)
            out = _run(ray_local, shuffled, NearDedupeSettings(), blocks=blocks, partitions=partitions)
            outcomes.append(sorted((i, r["drop_reason"], r["dedupe_cluster"]) for i, r in out.items()))
    finally:
        context.execution_options.resource_limits = saved
    assert outcomes[0] == outcomes[1]
    assert any(cluster for _, _, cluster in outcomes[0])


def test_jaccard_verification_rejects_false_candidates(ray_local, corpus):
    rows, groups, singles = corpus
    boilerplate = [row for row in rows if row["id"].startswith("b")]
    planted = [row for row in rows if row["id"] in groups[0]]
    # One row per band: any shared minimum makes a candidate, so the headers collide.
    loose = dict(bands=128, rows=1, num_perm=128)
    unverified = _run(ray_local, boilerplate + planted, NearDedupeSettings(**loose, verify_jaccard=False))
    assert sum(r["drop_reason"] == "near_duplicate" for i, r in unverified.items() if i.startswith("b")) > 0
    stats: dict = {}
    verified = _run(ray_local, boilerplate + planted, NearDedupeSettings(**loose, verify_jaccard=True),
                    stats=stats)
    assert stats["edges"] < stats["candidate_edges"]
    assert all(verified[r["id"]]["drop_reason"] is None for r in boilerplate)
    assert sum(r["drop_reason"] == "near_duplicate" for r in verified.values()) == len(groups[0]) - 1


def test_empty_input_and_input_with_nothing_to_compare(ray_local):
    empty = ray_local.data.from_arrow(WORK_SCHEMA.empty_table())
    stats: dict = {}
    assert near_dedupe(empty, NearDedupeSettings(), stats=stats).count() == 0
    assert stats["rows"] == 0
    only_dropped = [_row("x", "a = 1", drop_stage="message", drop_reason="message_too_short")]
    out = _run(ray_local, only_dropped, NearDedupeSettings(), blocks=1)
    assert out["x"]["drop_reason"] == "message_too_short"


def test_a_single_huge_document(ray_local):
    huge = stdlib_text(6_000_000)
    lines = huge.splitlines()
    lines[len(lines) // 2] += "  # patched"
    rows = [pair_row("huge-a", huge, "x = 1"), pair_row("huge-b", "\n".join(lines), "x = 1"),
            _row("small", stdlib_functions(1)[0])]
    out = _run(ray_local, rows, NearDedupeSettings(), blocks=3)
    assert out["huge-a"]["drop_reason"] is None
    assert out["huge-b"]["drop_reason"] == "near_duplicate"
    assert out["huge-b"]["dedupe_cluster"] == "huge-a"
    assert out["small"]["dedupe_cluster"] is None


def _reference_components(edges: list[tuple[str, str]]) -> dict[str, str]:
    parent: dict[str, str] = {}

    def find(node: str) -> str:
        while parent.setdefault(node, node) != node:
            node = parent[node]
        return node

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {node: find(node) for node in parent}


def test_connected_components_match_union_find_on_long_chains(ray_local):
    rng = random.Random(3)
    names = [f"n{value:05d}" for value in rng.sample(range(100_000), 400)]
    edges = []
    chain = names[:200]  # a path in random id order: the worst case for label propagation
    edges += [(max(a, b), min(a, b)) for a, b in zip(chain, chain[1:])]
    for start in range(200, 400, 20):  # stars and cycles
        group = names[start:start + 20]
        edges += [(max(a, b), min(a, b)) for a, b in zip(group, group[1:] + group[:1])]
    rng.shuffle(edges)
    dataset = ray_local.data.from_arrow(pa.Table.from_pylist(
        [{"a": a, "b": b} for a, b in edges], schema=EDGE_SCHEMA)).repartition(4)
    stars, rounds = connected_components(dataset, partitions=3)
    labels = {row["id"]: row["cluster"] for row in component_labels(stars, 3).take_all()}
    assert labels == _reference_components(edges)
    assert rounds < 20


def _lookalike_pairs(count: int) -> list[tuple[dict, dict, float]]:
    """``count`` pairs of look-alike files: one text and a copy whose tail is other code, cut so
    that their exact Jaccard lies just under 0.70 (the look-alikes of the issue, at about 0.69)."""
    lines = stdlib_text(600_000).splitlines()
    pairs = []
    for k in range(count):
        chunk = lines[1000 + k * 300:1150 + k * 300]
        other = lines[100_000 + k * 300:100_150 + k * 300]
        left = pair_row(f"look{k:02d}-a", "\n".join(chunk) + "\n", "")
        for tail in range(1, len(chunk)):
            right = pair_row(f"look{k:02d}-b", "\n".join(chunk[:-tail] + other[:tail]) + "\n", "")
            similarity = exact_jaccard(left, right)
            if similarity <= 0.70:
                pairs.append((left, right, similarity))
                break
    return pairs


def test_lookalikes_under_the_threshold_are_kept_by_default(ray_local):
    pairs = _lookalike_pairs(12)
    assert all(0.68 <= similarity <= 0.70 for _, _, similarity in pairs)
    rows = [row for left, right, _ in pairs for row in (left, right)]
    # Without verification, LSH buckets make some of them candidates and removes them.
    unverified = _run(ray_local, rows, NearDedupeSettings(verify_jaccard=False))
    assert sum(r["drop_reason"] == "near_duplicate" for r in unverified.values()) >= 1
    stats: dict = {}
    default = _run(ray_local, rows, NearDedupeSettings(), stats=stats)  # threshold 0.75
    assert all(r["drop_reason"] is None and r["dedupe_cluster"] is None for r in default.values())
    assert stats["candidate_edges"] >= 1 and stats["edges"] == 0
