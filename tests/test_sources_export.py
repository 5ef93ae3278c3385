"""The export source: row checks, content retrieval from file:// remotes, faults, caching, builds."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from codeprefs.core.files import file_sha256
from codeprefs.pipelines.manifest import parse_manifest
from codeprefs.pipelines.sources.kinds.export import PERMISSIVE_LICENSES
from codeprefs.pipelines.build import build
from codeprefs.pipelines.sources.export import ExportRules
from codeprefs.core.records import plan_chunks, read_records
from codeprefs.core.scratch import remotes_dir
from codeprefs.pipelines.sources.remote import (
    ClusterHostSlots,
    FetchSettings,
    HostSlots,
    RemoteCache,
    Retriever,
    SlotLeases,
    classify_failure,
)
from codeprefs.pipelines.steps import FetchContents, FilterMessages, LabelCriteria, ListRecords
from tests.remotes import JS_V2, RING_H_V2, STATS_V2, STATS_V3, build_remotes, export_row, write_jsonl


@pytest.fixture(scope="module")
def remotes(tmp_path_factory):
    return build_remotes(tmp_path_factory.mktemp("export-remotes"))


def cases(c: dict[str, str]) -> list[tuple[dict | str, str | None]]:
    """Export lines in file order, each with the reason it is dropped for (None: kept)."""
    fix, speed = "Fix bug: mean was off by one", "Speed up mean with the builtin sum"
    return [
        (export_row(c["stats_fix"], "acme/stats", "stats.py", fix), None),
        (export_row(c["stats_speed"], "acme/gone, acme/fork", "stats.py", speed), None),
        (export_row(c["ring_fix"], "acme/ring", "ring.h", "Fix overflow in ring buffer header"), None),
        (export_row(c["js_speed"], "acme/js", "join.js",
                    "Make join faster by avoiding quadratic concatenation"), None),
        ("{not json", "list/malformed_row"),
        ("[1, 2]", "list/malformed_row"),
        ({k: v for k, v in export_row(c["stats_fix"], "acme/stats", "stats.py", fix).items()
          if k != "license"}, "list/missing_field"),
        (export_row("xyz", "acme/stats", "stats.py", fix), "list/bad_sha"),
        (export_row(c["stats_fix"], "acme/stats", "stats.py", fix, unix_time="yesterday"), "list/bad_time"),
        (export_row(c["stats_fix"], "acme/..", "stats.py", fix), "list/bad_repo_name"),
        (export_row(c["stats_fix"], "acme/stats", "../../x.py", fix), "list/unsafe_path"),
        (export_row(c["stats_fix"], "acme/stats", "/etc/x.py", fix), "list/unsafe_path"),
        (export_row(c["stats_fix"], "acme/stats", "stats.py", fix, old_file="old.py"),
         "list/not_modified_in_place"),
        (export_row(c["stats_fix"], "acme/stats", "stats.py", fix, license="gpl-3.0"),
         "list/license_not_allowed"),
        (export_row(c["stats_fix"], "acme/stats", "stats.py", fix, license="no-such-license"),
         "list/license_not_allowed"),
        (export_row(c["stats_fix"], "acme/stats", "notes.md", fix), "list/not_target_language"),
        (export_row(c["stats_fix"], "other/repo", "stats.py", fix), "list/not_in_allowlist"),
        (export_row(c["stats_fix"], "acme/fork", "stats.py", "Update README.md"),
         "message/message_low_signal"),
        (export_row(c["js_root"], "acme/js", "join.js", "Bump copyright year"), "criteria/no_criterion"),
        (export_row(c["stats_fix"], "acme/gone", "stats.py", fix), "content/repo_vanished"),
        (export_row(c["js_speed"], "acme/stats", "join.js", fix), "content/commit_not_found"),
        (export_row(c["stats_notes"], "acme/stats", "stats.py", fix), "content/file_missing"),
        (export_row(c["stats_root"], "acme/fork", "stats.py", fix), "content/root_commit"),
    ]


def write_allowlists(folder: Path) -> dict[str, str]:
    lists = {"Python": ["acme/stats", "acme/fork", "acme/gone"], "C": ["acme/ring"],
             "JavaScript": ["acme/js", "acme/stats"]}
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for language, repos in lists.items():
        path = folder / f"{language.lower()}.json"
        path.write_text(json.dumps(repos))
        paths[language] = str(path)
    return paths


def rules_for(folder: Path) -> ExportRules:
    allowlists = tuple(sorted(write_allowlists(folder).items()))
    return ExportRules("commits", frozenset(PERMISSIVE_LICENSES), allowlists)


def list_file(path: Path, rules: ExportRules, chunk_bytes: int = 1 << 20) -> list[dict]:
    rows = []
    for chunk in plan_chunks(str(path), path.name, chunk_bytes=chunk_bytes):
        for table in ListRecords(rules)(pa.Table.from_pylist([chunk.to_item()])):
            rows.extend(table.to_pylist())
    return rows


def outcome(row: dict) -> str | None:
    return f"{row['drop_stage']}/{row['drop_reason']}" if row["drop_reason"] else None


def fetch_log(cache: Path) -> list[str]:
    path = cache / "fetch.log"
    return path.read_text().splitlines() if path.exists() else []


def test_jsonl_chunks_never_split_or_repeat_a_record(tmp_path):
    rows = [{"n": n, "text": "x" * (n % 7)} for n in range(200)]
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    for chunk_bytes in (1, 17, 100, 1 << 20):
        chunks = plan_chunks(str(path), "rows.jsonl", chunk_bytes=chunk_bytes)
        got = [record["n"] for chunk in chunks for _, record in read_records(chunk)]
        assert got == list(range(200)), chunk_bytes


def test_export_rows_are_checked_before_any_network_work(tmp_path, remotes):
    expected = cases(remotes.commits)
    path = write_jsonl(tmp_path / "export.jsonl", [line for line, _ in expected])
    rows = list_file(path, rules_for(tmp_path / "allow"), chunk_bytes=300)
    assert len(rows) == len(expected)
    for row, (_, reason) in zip(rows, expected):
        if reason and reason.startswith("list/"):
            assert outcome(row) == reason, row
        else:
            assert outcome(row) is None, row
    kept = rows[1]
    assert kept["repos"] == "acme/gone,acme/fork" and kept["language"] == "Python"
    assert kept["unix_time"] == 1_500_000_000 and kept["commit"] == remotes.commits["stats_speed"]
    assert rows[2]["language"] is None  # a .h file: decided from the repository tree later
    assert len({row["id"] for row in rows}) == len(rows)
    assert not (tmp_path / "cache").exists()


def run_stages(rows: list[dict], remotes_template: str, rules: ExportRules, scratch: Path,
               **settings) -> list[dict]:
    """The export steps with ``scratch`` as the scratch folder (its remotes: see remotes_dir)."""
    fetch = FetchContents(FetchSettings(remotes_template, **settings), str(scratch), rules, 1 << 18)
    return fetch.run(LabelCriteria().run(FilterMessages().run(rows)))


def test_contents_are_fetched_once_and_failures_counted(tmp_path, remotes):
    expected = cases(remotes.commits)
    path = write_jsonl(tmp_path / "export.jsonl", [line for line, _ in expected])
    rules = rules_for(tmp_path / "allow")
    scratch = tmp_path / "scratch"
    cache = remotes_dir(str(scratch), remotes.template)
    rows = run_stages(list_file(path, rules), remotes.template, rules, scratch, timeout_s=30,
                      backoff_s=0.05)
    assert [outcome(row) for row in rows] == [reason for _, reason in expected]
    by_path = {(row["repo"], row["path"]): row for row in rows[:4]}
    stats = by_path[("acme/stats", "stats.py")]
    assert stats["chosen"] == STATS_V2 and stats["rejected"].endswith(" - 1\n")
    assert stats["parent"] == remotes.commits["stats_root"]
    assert by_path[("acme/fork", "stats.py")]["chosen"] == STATS_V3  # acme/gone came first
    ring = by_path[("acme/ring", "ring.h")]
    assert ring["chosen"] == RING_H_V2 and ring["language"] == "C"
    assert by_path[("acme/js", "join.js")]["chosen"] == JS_V2
    assert {row["aspect"] for row in rows[:4]} == {"Functional_Correctness", "Runtime_Efficiency",
                                                   "Security_Hardness"}

    log = fetch_log(cache)
    assert remotes.commits["js_root"] not in "\n".join(log)  # no criterion, no fetch
    # One fetch per repository for the commits of the batch it is asked for first, then single
    # fetches for what that did not bring (acme/stats lacks one commit of its batch).
    assert sorted(tuple(line.split("\t")[1::2]) for line in log) == [
        ("acme/fork", "ok"), ("acme/fork", "ok"), ("acme/gone", "batch:repo_vanished"),
        ("acme/js", "ok"), ("acme/ring", "ok"), ("acme/stats", "batch:commit_not_found"),
        ("acme/stats", "commit_not_found"), ("acme/stats", "ok"), ("acme/stats", "ok")]
    failures = sorted(p.relative_to(cache / "failures").as_posix()
                      for p in (cache / "failures").rglob("*.json"))
    assert failures == ["file/acme/gone/repo.json",
                        f"file/acme/stats/{remotes.commits['js_speed']}.json"]

    # The rerun needs no remote at all: the cache has every commit and every known failure.
    moved = tmp_path / "remotes-away"
    shutil.move(remotes.root, moved)
    try:
        again = run_stages(list_file(path, rules), remotes.template, rules, scratch, timeout_s=30)
    finally:
        shutil.move(moved, remotes.root)
    assert fetch_log(cache) == log
    assert [outcome(row) for row in again] == [outcome(row) for row in rows]
    assert [row["chosen"] for row in again] == [row["chosen"] for row in rows]


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.accepted = 0
        self.open = 0
        self.peak = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self.open += 1
                self.peak = max(self.peak, self.open)
            threading.Thread(target=self._hold, args=(connection,), daemon=True).start()

    def _hold(self, connection: socket.socket) -> None:
        with connection:
            while connection.recv(4096):  # until the client is killed
                pass
        with self._lock:
            self.open -= 1

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def silent_server():
    server = SilentServer()
    yield server
    server.close()


def test_hanging_remote_hits_the_timeout_and_is_retried_then_counted(tmp_path, silent_server):
    template = f"git://127.0.0.1:{silent_server.port}/{{repo}}"
    rules = ExportRules("commits", frozenset(PERMISSIVE_LICENSES))
    path = write_jsonl(tmp_path / "export.jsonl",
                       [export_row("ab" * 20, "slow/repo", "a.py", "Fix bug in the parser")])
    scratch = tmp_path / "scratch"
    cache = remotes_dir(str(scratch), template)
    started = time.monotonic()
    rows = run_stages(list_file(path, rules), template, rules, scratch, timeout_s=1, retries=1,
                      backoff_s=0.1)
    elapsed = time.monotonic() - started
    assert outcome(rows[0]) == "content/fetch_timeout"
    assert silent_server.accepted == 2  # the first try and one retry
    assert 2.0 <= elapsed < 10
    assert [line.split("\t")[3] for line in fetch_log(cache)] == ["fetch_timeout"] * 2
    assert not (cache / "failures").exists()  # transient: a rerun tries again


def test_fetches_per_host_are_bounded(tmp_path, silent_server):
    template = f"git://127.0.0.1:{silent_server.port}/{{repo}}"
    settings = FetchSettings(template, timeout_s=1, retries=0, max_concurrent=2)
    retriever = Retriever(settings, RemoteCache(tmp_path / "cache"), HostSlots(2))
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda n: retriever.retrieve(f"{n:040x}", [f"owner/repo{n}"]), range(6)))
    assert [result.reason for result in results] == ["fetch_timeout"] * 6
    assert silent_server.accepted == 6
    assert silent_server.peak == 2


def test_cluster_slots_bound_fetches_across_processes(ray_local, tmp_path, silent_server):
    template = f"git://127.0.0.1:{silent_server.port}/{{repo}}"
    slots = ClusterHostSlots(2, lease_s=30)
    retriever = Retriever(FetchSettings(template, timeout_s=1, retries=0), RemoteCache(tmp_path), slots)
    with ThreadPoolExecutor(max_workers=5) as pool:
        results = list(pool.map(lambda n: retriever.retrieve(f"{n:040x}", [f"o/r{n}"]), range(5)))
    assert {result.reason for result in results} == {"fetch_timeout"}
    assert silent_server.peak == 2
    assert slots.peaks() == {f"127.0.0.1:{silent_server.port}": 2}


def test_slot_leases_expire_when_a_holder_dies():
    leases = SlotLeases(limit=1, lease_s=0.05)
    assert leases.acquire("h", "a") and not leases.acquire("h", "b")
    assert leases.acquire("other", "c")  # limits are per host
    time.sleep(0.08)
    assert leases.acquire("h", "b")  # a's lease ran out
    leases.release("h", "b")
    assert leases.acquire("h", "d")


@pytest.mark.parametrize(("stderr", "reason"), [
    ("remote: Repository not found.\nfatal: repository 'https://github.com/a/b.git/' not found",
     "repo_vanished"),
    ("fatal: could not read Username for 'https://github.com': terminal prompts disabled",
     "repo_vanished"),
    ("fatal: remote error: upload-pack: not our ref 1234", "commit_not_found"),
    ("fatal: unable to access 'https://github.com/a/b.git/': Could not resolve host: github.com",
     "fetch_failed"),
    ("error: RPC failed; HTTP 503\nfatal: expected flush after ref listing", "fetch_failed"),
])
def test_git_failures_are_classified(stderr, reason):
    assert classify_failure(stderr) == reason


def test_build_from_an_export_and_a_rerun_without_remotes(ray_local, tmp_path, remotes):
    expected = cases(remotes.commits)
    lines = [line for line, _ in expected]
    write_jsonl(tmp_path / "in" / "export.jsonl", [line for i, line in enumerate(lines) if i != 3])
    pq.write_table(pa.Table.from_pylist([lines[3]]), tmp_path / "in" / "more.parquet")
    allowlists = {language: str(Path(path).relative_to(tmp_path))
                  for language, path in write_allowlists(tmp_path / "allow").items()}
    manifest = parse_manifest({
        "name": "export-run",
        "sources": [{"type": "export", "path": ["in/*.jsonl", "in/more.parquet"],
                     "remote": remotes.template, "allowlists": allowlists,
                     "fetch_timeout_s": 30, "retry_backoff_s": 0.05, "max_concurrent_fetches": 4}],
        "pairs": {"scope": "file"},  # the rows are compared with whole files
        "ray": {"scratch_dir": str(tmp_path / "scratch")},
    }, tmp_path)
    out = tmp_path / "out"
    record = build(manifest, out)

    frame = pl.read_parquet(out / "data" / "*.parquet")
    assert sorted(frame["repo"].to_list()) == ["acme/fork", "acme/js", "acme/ring", "acme/stats"]
    assert set(frame["language"]) == {"Python", "C", "JavaScript"}
    assert frame.filter(pl.col("repo") == "acme/ring")["chosen"][0] == RING_H_V2
    funnel = {stage["stage"]: stage["reasons"] for stage in record["funnel"]}
    wanted: dict[str, dict[str, int]] = {}
    for _, reason in expected:
        if reason:
            stage, why = reason.split("/")
            wanted.setdefault(stage, {}).setdefault(why, 0)
            wanted[stage][why] += 1
    for stage, reasons in wanted.items():
        assert funnel[stage] == reasons, stage
    assert record["rows"] == {"total": len(expected), "kept": 4, "dropped": len(expected) - 4}

    inputs = {item["path"]: item for item in record["inputs"]}
    assert inputs["in/export.jsonl"]["sha256"] == file_sha256(tmp_path / "in" / "export.jsonl")
    assert inputs["in/more.parquet"]["bytes"] == (tmp_path / "in" / "more.parquet").stat().st_size
    assert inputs["allow/python.json"] == {
        "type": "allowlist", "language": "Python", "path": "allow/python.json", "repos": 3,
        "bytes": (tmp_path / "allow" / "python.json").stat().st_size,
        "sha256": file_sha256(tmp_path / "allow" / "python.json")}

    cache = remotes_dir(str(tmp_path / "scratch"), remotes.template)  # node-local, not in the output
    assert not (out / ".cache" / "remotes").exists()
    log = fetch_log(cache)
    assert log
    shard = out / record["outputs"][0]["path"]
    digest = file_sha256(shard)
    moved = tmp_path / "remotes-away"
    shutil.move(remotes.root, moved)
    try:
        again = build(manifest, out)
    finally:
        shutil.move(moved, remotes.root)
    assert fetch_log(cache) == log  # nothing fetched twice
    assert again["funnel"] == record["funnel"]
    assert file_sha256(shard) == digest


@pytest.mark.parametrize(("source", "message"), [
    ({"path": "e.jsonl", "remote": "https://example.com/repo.git"},
     "remote: Value error, must contain {repo}"),
    ({"path": "e.jsonl", "remote": "https://x/{repo}/{other}"}, "only {repo} may be substituted"),
    ({"path": "e.jsonl", "allowlists": {"cobol": "c.json"}}, "unknown language 'cobol'"),
    ({"path": "e.jsonl", "max_concurrent_fetches": 0}, "max_concurrent_fetches"),
    ({"path": "missing/*.jsonl"}, "sources.0.path: pattern 'missing/*.jsonl' matches nothing"),
    ({"path": "e.jsonl", "retry": 3}, "retry: unknown key"),
])
def test_export_manifest_mistakes_name_the_key(tmp_path, source, message):
    from codeprefs.pipelines.manifest import ManifestError

    with pytest.raises(ManifestError) as caught:
        parse_manifest({"name": "e", "sources": [{"type": "export", **source}]}, tmp_path)
    assert message in str(caught.value)


def test_export_defaults_and_a_missing_file(tmp_path):
    from codeprefs.pipelines.build import BuildError

    manifest = parse_manifest({"name": "e", "sources": [{"type": "export", "path": "e.jsonl"}]}, tmp_path)
    source = manifest.sources[0]
    assert source.licenses == list(PERMISSIVE_LICENSES) and len(source.licenses) == 12
    assert (source.remote, source.max_repo_tries, source.fetch_timeout_s, source.retries,
            source.max_concurrent_fetches) == ("https://github.com/{repo}.git", 3, 120, 2, 8)
    with pytest.raises(BuildError, match="sources.0: path: no such export file: e.jsonl"):
        build(manifest, tmp_path / "out")


def test_a_nul_in_the_message_is_a_counted_binary_drop(tmp_path):
    sha = "a" * 40
    lines = [export_row(sha, "acme/stats", "stats.py", "Fix bug: mean was off by one"),
             export_row(sha, "acme/stats", "stats.py", "Fix bug:\x00 mean was off by one")]
    rows = list_file(write_jsonl(tmp_path / "e.jsonl", lines), rules_for(tmp_path / "allow"))
    assert [outcome(row) for row in rows] == [None, "list/binary"]


DEEP = "[" * 100_000  # json.loads recursion: a RecursionError before the fix
HOSTILE_LINES = [
    (DEEP, "nested too deeply"),
    ('"just a string"', "a JSON str, not an object"),
    ('{"commit": ' + "[" * 500 + "]" * 500 + ', "repos": "acme/stats", "license": "mit", '
     '"old_file": "stats.py", "new_file": "stats.py", "unix_time": 1, "subject": "Fix bug: x"}',
     "field 'commit' is list, expected text"),
    ('{"commit": "' + "a" * 40 + '", "repos": {"x": 1}, "license": "mit", "old_file": "stats.py", '
     '"new_file": "stats.py", "unix_time": 1, "subject": "Fix bug: x"}',
     "field 'repos' is dict, expected text or a list of text"),
    ('{"unix_time": ' + "9" * 5000 + "}", "not JSON"),  # beyond Python's int-from-text limit
]


def test_malformed_lines_are_counted_with_their_file_and_line(tmp_path):
    good = json.dumps(export_row("a" * 40, "acme/stats", "stats.py", "Fix bug: mean was off by one"))
    path = tmp_path / "e.jsonl"
    path.write_text("\n".join([good, *(line for line, _ in HOSTILE_LINES), good]) + "\n")
    for chunk_bytes in (64, 1 << 20):  # the line number is right in every chunk
        rows = list_file(path, rules_for(tmp_path / "allow"), chunk_bytes=chunk_bytes)
        assert [outcome(row) for row in rows] == [None, *["list/malformed_row"] * len(HOSTILE_LINES), None]
        for number, (row, (_, error)) in enumerate(zip(rows[1:], HOSTILE_LINES), start=2):
            assert row["message"].startswith(f"e.jsonl:{number}: {error}"), row["message"]


def test_build_counts_malformed_export_lines(ray_local, tmp_path, remotes):
    good = export_row(remotes.commits["stats_fix"], "acme/stats", "stats.py", "Fix bug: mean was off by one")
    path = tmp_path / "in" / "export.jsonl"
    path.parent.mkdir()
    path.write_text("\n".join([json.dumps(good), *(line for line, _ in HOSTILE_LINES)]) + "\n")
    manifest = parse_manifest({"name": "hostile", "sources": [
        {"type": "export", "path": "in/export.jsonl", "remote": remotes.template, "fetch_timeout_s": 30}]},
        tmp_path)
    record = build(manifest, tmp_path / "out")
    funnel = {stage["stage"]: stage["reasons"] for stage in record["funnel"]}
    assert funnel["list"] == {"malformed_row": len(HOSTILE_LINES)}
    assert record["rows"]["kept"] == 1
    rejects = pl.read_parquet(tmp_path / "out" / "rejects" / "*.parquet")
    assert sorted(rejects["message"].str.extract(r"^(in/export.jsonl:\d+):").to_list()) == [
        f"in/export.jsonl:{n}" for n in range(2, 2 + len(HOSTILE_LINES))]


def test_a_truncated_gzip_export_stops_the_build_naming_the_file(ray_local, tmp_path, remotes):
    import gzip

    from codeprefs.pipelines.build import BuildError

    good = export_row(remotes.commits["stats_fix"], "acme/stats", "stats.py", "Fix bug: mean was off by one")
    data = gzip.compress(("\n".join([json.dumps(good)] * 2000) + "\n").encode())
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "export.jsonl.gz").write_bytes(data[: len(data) // 2])
    manifest = parse_manifest({"name": "cut", "sources": [
        {"type": "export", "path": "in/export.jsonl.gz", "remote": remotes.template}]}, tmp_path)
    with pytest.raises(BuildError, match=r"sources.0: in/export.jsonl.gz: truncated or corrupt gzip "
                                         r"file \(after line \d+\)"):
        build(manifest, tmp_path / "out")


def test_a_one_row_group_parquet_export_is_cut_into_units_each_row_once(ray_local, tmp_path, remotes):
    """5,000 rows in one Parquet row group, 800 rows a unit: seven units (the row group is cut),
    every row counted once (kept in a shard or dropped into rejects), and a rerun reuses them all."""
    c = remotes.commits
    real = {100: export_row(c["stats_fix"], "acme/stats", "stats.py", "Fix bug: mean was off by one"),
            2_500: export_row(c["ring_fix"], "acme/ring", "ring.h", "Fix overflow in ring buffer header"),
            4_999: export_row(c["js_speed"], "acme/js", "join.js", "Make join faster by avoiding quadratic concatenation")}
    rows = [real.get(k) or export_row(c["stats_fix"], "acme/stats", "stats.py", f"Bump copyright year {k}")
            for k in range(5_000)]
    (tmp_path / "in").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in" / "export.parquet", row_group_size=5_000)
    assert pq.ParquetFile(tmp_path / "in" / "export.parquet").metadata.num_row_groups == 1
    manifest = parse_manifest({"name": "one-group", "ray": {"num_cpus": 2}, "pairs": {"scope": "file"},
                               "sources": [{"type": "export", "path": "in/export.parquet", "unit_rows": 800,
                                            "remote": remotes.template, "fetch_timeout_s": 30}]}, tmp_path)
    out = tmp_path / "out"
    lines: list[str] = []
    record = build(manifest, out, log=lines.append)

    assert record["stages"][0]["units"] == 7 and record["stages"][0]["units_reused"] == 0  # ceil(5000 / 800)
    assert record["rows"] == {"total": 5_000, "kept": 3, "dropped": 4_997}
    units = sorted((out / ".cache" / "stages" / "source").glob("*/unit-*.parquet"))
    assert len(units) == 7
    assert sorted(pl.read_parquet(units)["message"].to_list()) == sorted(row["message"] for row in rows)
    kept = pl.read_parquet(out / "data" / "*.parquet")
    assert sorted(kept["repo"].to_list()) == ["acme/js", "acme/ring", "acme/stats"]
    rejects = pl.read_parquet(out / "rejects" / "*.parquet")
    assert rejects.height == 4_997 and rejects["message"].n_unique() == 4_997
    assert set(rejects["message"]) == {row["message"] for k, row in enumerate(rows) if k not in real}

    shard = out / record["outputs"][0]["path"]
    digest = file_sha256(shard)
    again = build(manifest, out, log=lines.append)  # the same settings: nothing runs again
    assert again["up_to_date"] is True and file_sha256(shard) == digest
    (out / "run.json").unlink()  # forget the finished run: the source stage is still reused whole
    rerun = build(manifest, out, log=lines.append)
    assert rerun["stages"][0]["units"] == 7 and rerun["stages"][0]["units_reused"] == 7
    assert rerun["rows"] == record["rows"] and file_sha256(shard) == digest
