"""End to end: a build with near-dedupe and decontamination over real git repositories."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import polars as pl
import pytest

from codeprefs.pipelines.manifest import parse_manifest
from codeprefs.pipelines.build import BuildError, build
from tests.dedupe_helpers import LICENSE_HEADER, reformat, rename_function, stdlib_functions

pytestmark = pytest.mark.ray

BENCHMARK_PROMPT = ("Write a function to find the minimum cost path to reach (m, n) from (0, 0) "
                    "for the given cost matrix.")


def _versions() -> list[str]:
    """A module of three real functions, then two edits of it (two commits)."""
    functions = stdlib_functions(3, 70, 200)
    v1 = "\n\n".join(functions)
    # A code change (a comment-only one would be Readability_Maintainability or dropped).
    v2 = v1.replace(functions[1], functions[1].replace("\n", "\n    checked = True\n", 1))
    v3 = v2.replace(functions[2], functions[2] + "\n    return None\n")
    return [v1, v2, v3]


@pytest.fixture
def repositories(make_repo, tmp_path):
    """upstream; a vendored copy re-indented with one function renamed; an exact mirror; other."""
    v1, v2, v3 = _versions()
    upstream = make_repo("upstream")
    upstream.commit("Add the helpers module", {"helpers.py": v1})
    upstream.commit("Fix bug in boundary case of the second helper", {"helpers.py": v2})
    upstream.commit("Improve speed: " + BENCHMARK_PROMPT, {"helpers.py": v3})

    def vendored(code: str) -> str:
        return rename_function(reformat(code), "vendored_entry")

    vendor = make_repo("vendor")
    vendor.commit("Vendor the helpers", {"lib/helpers.py": vendored(v1)})
    vendor.commit("Fix bug in boundary case of the second helper", {"lib/helpers.py": vendored(v2)})

    mirror = tmp_path / "mirror"
    subprocess.run(["git", "clone", "-q", str(upstream.path), str(mirror)], check=True)

    other_code = LICENSE_HEADER + "\n\n".join(stdlib_functions(6, 20, 35)[3:])
    other = make_repo("other")
    other.commit("Add the parsing module", {"parse.py": other_code})
    other.commit("Fix bug in boundary case of the parser", {"parse.py": other_code + "\n\nDEBUG = False\n"})

    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "mbpp.jsonl").write_text(json.dumps({"task_id": 1, "prompt": BENCHMARK_PROMPT}) + "\n",
                                      encoding="utf-8")
    return [str(upstream.path), str(vendor.path), str(mirror), str(other.path)]


def _manifest(tmp_path, repos, **extra):
    data = {"name": "dedupe-run", "sources": [{"type": "git", "repos": repos}],
            "dedupe": {"exact": True, "near": {"fields": ["chosen", "rejected"], "ngram": 20,
                                               "threshold": 0.75, "num_perm": 256}},
            "decontaminate": {"benchmarks": ["bench/*.jsonl"], "field": "prompt", "ngram": 13}, **extra}
    return parse_manifest(data, tmp_path)


def test_build_removes_near_duplicates_and_contaminated_rows(ray_local, tmp_path, repositories):
    out = tmp_path / "out"
    record = build(_manifest(tmp_path, repositories), out)

    funnel = {stage["stage"]: stage for stage in record["funnel"]}
    assert funnel["list"]["reasons"] == {"root_commit": 4}
    assert funnel["decontaminate"]["reasons"] == {"benchmark_overlap": 2}  # upstream and mirror
    # upstream's and the mirror's "fix" rows and the vendored "fix" row form one cluster;
    # nothing is left for the writer's exact dedupe to count.
    assert funnel["dedupe"]["reasons"] == {"near_duplicate": 2}
    for before, after in zip(record["funnel"], record["funnel"][1:]):
        assert before["rows_out"] == after["rows_in"]
    assert record["rows"] == {"total": 10, "kept": 2, "dropped": 8}
    assert record["steps"]["near_dedupe"]["clustered_rows"] == 3
    assert set(record["steps"]["near_dedupe"]["seconds"]) == {"signatures", "buckets", "verify", "components", "mark"}
    assert record["steps"]["decontaminate"]["benchmarks"]["bench/mbpp.jsonl"]["prompts"] == 1

    kept = pl.read_parquet(out / "data" / "*.parquet")
    rejects = pl.read_parquet(out / "rejects" / "*.parquet")
    assert "dedupe_cluster" not in kept.columns
    near = rejects.filter(pl.col("drop_reason") == "near_duplicate")
    fix_rows = pl.concat([kept.select("id", "repo", "message"),
                          near.select("id", "repo", "message")]).filter(
        pl.col("message").str.starts_with("Fix bug in boundary case of the second"))
    representative = min(fix_rows["id"].to_list())
    assert kept.filter(pl.col("id") == representative).height == 1
    assert set(near["dedupe_cluster"].to_list()) == {representative}
    assert sorted(near["repo"].to_list() + kept.filter(pl.col("id") == representative)["repo"].to_list()) == sorted(
        Path(path).name for path in repositories[:3])  # rows name repositories publicly: the folder
    other = kept.filter(pl.col("repo") == Path(repositories[3]).name)
    assert other.height == 1  # shares the license header with nothing similar enough

    leaked = rejects.filter(pl.col("drop_reason") == "benchmark_overlap")
    assert leaked["decontam_benchmark"].to_list() == ["bench/mbpp.jsonl"] * 2
    assert all("minimum cost path to reach ( m , n )" not in g and "minimum cost path" in g
               for g in leaked["decontam_ngram"].to_list())
    assert leaked["dedupe_cluster"].null_count() == 2  # dropped before near-dedupe ran


def test_build_fails_before_any_work_on_an_unreadable_benchmark(ray_local, tmp_path, repositories):
    (tmp_path / "bench" / "broken.jsonl").write_text("{oops\n", encoding="utf-8")
    with pytest.raises(BuildError, match="broken.jsonl"):
        build(_manifest(tmp_path, repositories[:1]), tmp_path / "out")
    assert not (tmp_path / "out" / "run.json").exists()
