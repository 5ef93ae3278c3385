"""Training/benchmark splits: the time cutoff, the benchmark window, disjoint repositories."""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from codeprefs.pipelines.manifest import ManifestError, parse_manifest
from codeprefs.pipelines.splits import SplitConfig
from codeprefs.pipelines.build import build
from codeprefs.core.rows import empty_row, to_table
from codeprefs.pipelines.splits import SplitRule, training_repositories, utc_midnight
from codeprefs.pipelines.steps import SplitCommits
from tests.conftest import GitRepo
from tests.remotes import JS_V2, STATS_V1, STATS_V2, STATS_V3, build_remotes, export_row, write_jsonl

CUTOFF = utc_midnight(date(2019, 3, 1))
START, END = utc_midnight(date(2019, 6, 1)), utc_midnight(date(2021, 1, 1))
PAPER = {"train_before": date(2019, 3, 1), "benchmark": {"from": date(2019, 6, 1), "to": date(2021, 1, 1)}}


def rule(keep: str, **extra) -> SplitRule:
    return SplitRule.from_config(SplitConfig(**PAPER, keep=keep, **extra))


def test_the_cutoff_and_the_window_have_exact_edges():
    assert CUTOFF == 1551398400  # 2019-03-01T00:00:00Z
    train = rule("train")
    assert train.reason(CUTOFF - 1, ["a/b"]) is None
    assert train.reason(CUTOFF, ["a/b"]) == "not_before_train_cutoff"
    assert train.reason(None, ["a/b"]) == "no_commit_time"
    bench = rule("benchmark")
    assert bench.reason(START, ["a/b"]) is None
    assert bench.reason(END - 1, ["a/b"]) is None
    assert bench.reason(START - 1, ["a/b"]) == "outside_benchmark_window"
    assert bench.reason(END, ["a/b"]) == "outside_benchmark_window"
    assert bench.reason(START, ["new/x", "old/y"], frozenset({"old/y"})) == "repository_in_train"
    assert rule("benchmark", repository_disjoint=False).reason(START, ["old/y"], frozenset({"old/y"})) is None


@pytest.mark.parametrize(("split", "message"), [
    ({"keep": "benchmark", "train_before": "2019-03-01"}, "keep: benchmark needs a benchmark window"),
    ({"keep": "train"}, "keep: train needs train_before"),
    ({"keep": "benchmark", "benchmark": {"from": "2019-06-01", "to": "2020-01-01"}},
     "repository_disjoint needs train_before"),
    ({**PAPER, "benchmark": {"from": "2019-01-01", "to": "2020-01-01"}},
     "the benchmark window must start on or after train_before"),
    ({**PAPER, "benchmark": {"from": "2020-01-01", "to": "2019-07-01"}}, "`to` must be after `from`"),
    ({**PAPER, "keep": "test"}, "split.keep"),
])
def test_incomplete_splits_are_refused(split, message):
    with pytest.raises(ManifestError, match=message):
        parse_manifest({"name": "s", "sources": [{"type": "git", "repos": ["/x"]}], "split": split},
                       Path("/tmp"))


def listing_rows() -> list[dict]:
    """Commit rows of three repositories; one row is already dropped, one has no time."""
    specs = [
        ("Old/Lib", None, CUTOFF - 86400, None),  # its earliest commit is before the cutoff
        (None, "old/lib,new/app", START + 10, None),
        (None, "new/app", START + 20, None),
        (None, "fresh/tool", START + 30, None),
        (None, "dropped/early", CUTOFF - 5, "license_not_allowed"),  # still evidence of age
        (None, "timeless/x", None, None),
    ]
    rows = []
    for index, (repo, repos, unix_time, reason) in enumerate(specs):
        row = empty_row()
        row.update(id=f"{index:032x}", repo=repo, repos=repos, unix_time=unix_time,
                   drop_stage="list" if reason else None, drop_reason=reason)
        rows.append(row)
    return rows


def test_training_repositories_are_found_by_earliest_commit_in_any_order(ray_local):
    import ray.data

    rows = listing_rows()
    found = []
    for seed, blocks in ((0, 1), (1, 4)):
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        tables = [to_table(shuffled[i::blocks]) for i in range(blocks)]
        found.append(training_repositories([ray.data.from_arrow(tables)], CUTOFF))
    assert found[0] == frozenset({"old/lib", "dropped/early"})
    assert found[1] == found[0]

    step = SplitCommits(rule("benchmark"), found[0])
    kept = step.run([row for row in listing_rows() if row["drop_reason"] is None])
    assert [row["drop_reason"] for row in kept] == [
        "outside_benchmark_window", "repository_in_train", None, None, "no_commit_time"]


def dated_commit(repo: GitRepo, when: str, message: str, files: dict[str, str]) -> str:
    for relative, content in files.items():
        repo.write(relative, content)
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", message, f"--date={when}")
    return repo.head()


def history(repo: GitRepo, dates: list[str]) -> None:
    """A root commit, then one fix per date, each a kept pair without a split."""
    dated_commit(repo, dates[0], "Add statistics helpers", {"stats.py": STATS_V1})
    versions = [STATS_V2, STATS_V3, STATS_V3 + "\n\ndef half(x):\n    return x / 2\n"]
    for when, content in zip(dates[1:], versions):
        dated_commit(repo, when, f"Fix bug found on {when[:10]}", {"stats.py": content})


def split_manifest(tmp_path: Path, sources: list[dict], keep: str) -> object:
    split = {"train_before": "2019-03-01", "benchmark": {"from": "2019-06-01", "to": "2021-01-01"},
             "keep": keep}
    return parse_manifest({"name": f"split-{keep}", "sources": sources, "split": split,
                           "pairs": {"scope": "file"}}, tmp_path)  # rows compared with whole files


def test_train_split_of_a_git_source(ray_local, tmp_path):
    repo = GitRepo(tmp_path / "lib")
    history(repo, ["2018-01-01T00:00:00Z", "2018-06-01T00:00:00Z", "2019-02-28T23:59:59Z",
                   "2019-03-01T00:00:00Z"])
    record = build(split_manifest(tmp_path, [{"type": "git", "repos": ["lib"]}], "train"),
                   tmp_path / "out")
    frame = pl.read_parquet(tmp_path / "out" / "data" / "*.parquet")
    assert sorted(frame["unix_time"].to_list()) == [utc_midnight(date(2018, 6, 1)), CUTOFF - 1]
    funnel = {stage["stage"]: stage for stage in record["funnel"]}
    assert funnel["split"]["reasons"] == {"not_before_train_cutoff": 1}
    assert [stage["stage"] for stage in record["funnel"]][:3] == ["list", "split", "message"]


def test_benchmark_split_is_repository_disjoint_across_git_and_export_sources(ray_local, tmp_path):
    old = GitRepo(tmp_path / "old")  # began before the cutoff: a training repository
    history(old, ["2018-01-01T00:00:00Z", "2018-02-01T00:00:00Z", "2019-07-01T00:00:00Z"])
    new = GitRepo(tmp_path / "new")  # began after it: its window commits are the benchmark
    history(new, ["2019-06-15T00:00:00Z", "2019-07-01T00:00:00Z", "2020-12-31T23:59:59Z",
                  "2021-01-01T00:00:00Z"])
    remotes = build_remotes(tmp_path / "export")
    c = remotes.commits
    in_window = utc_midnight(date(2019, 9, 1))
    write_jsonl(tmp_path / "export.jsonl", [
        # acme/stats is a training repository: a 2018 commit names it (dropped, but still seen).
        export_row(c["stats_root"], "acme/stats", "stats.py", "Add statistics helpers",
                   license="gpl-3.0", unix_time=utc_midnight(date(2018, 5, 1))),
        export_row(c["stats_fix"], "acme/stats", "stats.py", "Fix bug: mean was off by one",
                   unix_time=in_window),
        export_row(c["js_speed"], "acme/js", "join.js",
                   "Make join faster by avoiding quadratic concatenation", unix_time=in_window),
        export_row(c["ring_fix"], "acme/ring", "ring.h", "Fix overflow in ring buffer header",
                   unix_time=utc_midnight(date(2022, 1, 1))),
    ])
    sources = [{"type": "git", "repos": ["old", "new"]},
               {"type": "export", "path": "export.jsonl", "remote": remotes.template,
                "retry_backoff_s": 0.05}]
    out = tmp_path / "out"
    record = build(split_manifest(tmp_path, sources, "benchmark"), out)
    frame = pl.read_parquet(out / "data" / "*.parquet").sort("unix_time")
    assert frame["repo"].to_list() == ["new", "acme/js", "new"]
    assert frame.filter(pl.col("repo") == "acme/js")["chosen"][0] == JS_V2
    funnel = {stage["stage"]: stage["reasons"] for stage in record["funnel"]}
    assert funnel["split"] == {"outside_benchmark_window": 3, "repository_in_train": 2}
    from codeprefs.core.scratch import remotes_dir

    assert not (out / ".cache" / "remotes").exists()  # fetched objects live in the node's scratch folder
    fetched = (remotes_dir(None, remotes.template) / "fetch.log").read_text()
    assert c["js_speed"] in fetched
    assert c["stats_fix"] not in fetched and c["ring_fix"] not in fetched  # split before fetching
