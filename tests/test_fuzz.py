"""Property-based fuzzing of what reads untrusted input: random and hostile inputs either give a
result, a counted drop or a clear error naming the input, never another exception or a hang.

Every test is derandomized (the same examples on every run, so CI is reproducible) and has an
explicit example budget and deadline; each defect the fuzzer found is pinned with ``@example``.
No Ray instance is started: the record readers and row checks run as the Ray tasks run them.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import signal
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from codeprefs.pipelines.manifest import Manifest, ManifestError, load_manifest, parse_manifest
from codeprefs.pipelines.sources.kinds.export import PERMISSIVE_LICENSES
from codeprefs.core.schema import Language
from codeprefs.parsers.headers import HeaderContext, resolve_header_language
from codeprefs.parsers.treesitter import ParseLimitExceeded, ParseLimits, inspect_source
from codeprefs.core.rows import to_table
from codeprefs.pipelines.sources.dataset import DatasetRules
from codeprefs.pipelines.sources.export import ExportRules
from codeprefs.core.records import plan_chunks
from codeprefs.pipelines.steps import ListRecords

FUZZ = settings(derandomize=True, database=None, deadline=2000, max_examples=60,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


def fuzz(examples: int) -> settings:
    """The suite's settings with an example budget of its own."""
    return settings(FUZZ, max_examples=examples)

# What the list stage may answer for an export row / a dataset record (pipelines/sources/*.py).
EXPORT_REASONS = {"malformed_row", "missing_field", "binary", "bad_sha", "bad_time", "bad_repo_name",
                  "unsafe_path", "not_modified_in_place", "license_not_allowed", "not_target_language",
                  "not_in_allowlist"}
DATASET_REASONS = {"malformed_row", "missing_field", "not_text", "binary", "unknown_language",
                   "unknown_criterion"}


@contextlib.contextmanager
def time_limit(seconds: int):
    """Fail (instead of hanging the suite) when the body runs longer than ``seconds``."""
    def expired(_signum, _frame):
        raise AssertionError(f"no answer within {seconds}s: a hang")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory(prefix="codeprefs-fuzz-") as folder:
        yield Path(folder)


# -- JSON-like values -----------------------------------------------------------------------------

SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True)
           | st.text(max_size=12))


def json_like(keys: st.SearchStrategy[str]) -> st.SearchStrategy:
    return st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(keys, inner, max_size=4), max_leaves=12)


# -- the manifest loader ----------------------------------------------------------------------------

MANIFEST_KEYS = st.sampled_from([
    "name", "sources", "type", "repos", "path", "remote", "columns", "filters", "split", "dedupe",
    "near", "exact", "output", "shards", "ray", "synthesis", "decontaminate", "benchmarks", "subset",
    "language", "aspect", "allowlists", "licenses", "max_commits", "on_error", "ratio", "min", "max",
    "column", "equals", "one_of", "validation", "max_bytes", "sandbox", "memory_mb", "bug_injection",
]) | st.text(max_size=6)
SOURCE = st.fixed_dictionaries(
    {"type": st.sampled_from(["git", "export", "dataset", "solutions", "other"])},
    optional={"repos": json_like(MANIFEST_KEYS), "path": st.one_of(st.text(max_size=20), json_like(MANIFEST_KEYS)),
              "columns": json_like(MANIFEST_KEYS), "filters": json_like(MANIFEST_KEYS),
              "language": json_like(MANIFEST_KEYS), "subset": json_like(MANIFEST_KEYS)})
MANIFESTS = st.one_of(
    json_like(MANIFEST_KEYS),
    st.fixed_dictionaries({"name": st.text(max_size=10), "sources": st.lists(SOURCE, max_size=3)},
                          optional={key: json_like(MANIFEST_KEYS) for key in
                                    ("filters", "dedupe", "output", "split", "synthesis", "decontaminate")}),
)


def _check_manifest_error(error: ManifestError, origin: str) -> None:
    text = str(error)
    assert text.startswith(origin) or text.startswith("cannot read manifest"), text
    assert text.strip() != origin


@fuzz(60)
@given(data=MANIFESTS)
@example(data={"name": "x", "sources": [{"type": "git", "repos": ["\x00"]}]})
@example(data={"name": "x", "sources": [{"type": "export", "path": "a\x00b/*.jsonl"}]})
@example(data={"name": "x", "sources": [{"type": "dataset", "path": ["[" * 50 + "*"]}]})
def test_manifest_dicts_load_or_name_the_key(workdir, data):
    with time_limit(10):
        try:
            manifest = parse_manifest(data, workdir, origin="fuzz.yaml")
        except ManifestError as error:
            _check_manifest_error(error, "fuzz.yaml")
        else:
            assert isinstance(manifest, Manifest)


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + level)}: &{chr(98 + level)} [" + ", ".join([f"*{chr(97 + level)}"] * 9) + "]\n"
    for level in range(8)) + "name: *i\nsources: *i\n"


@settings(FUZZ, deadline=None)  # the YAML parser takes seconds on deep nesting; time_limit bounds it
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200),
                      st.builds(lambda data: yaml.safe_dump(data, allow_unicode=True), MANIFESTS)))
@example(text=b"\xff\xfename: x\n")  # not UTF-8
@example(text="name: x\nsources: " + "[" * 1500)  # nested too deeply for the YAML parser
@example(text="name: x\nsources: " + "{a: " * 1500)
@example(text=ALIAS_BOMB)  # 9^9 references to one list: validation must not walk them all
@example(text="name: x\nsources: *nowhere\n")
@example(text="!!python/object/apply:os.system ['touch /tmp/codeprefs-fuzz-pwned']")
def test_manifest_files_load_or_name_the_file(workdir, text):
    path = workdir / "fuzz.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    with time_limit(30):
        try:
            manifest = load_manifest(path)
        except ManifestError as error:
            _check_manifest_error(error, str(path))
        else:
            assert isinstance(manifest, Manifest)
    assert not Path("/tmp/codeprefs-fuzz-pwned").exists()


# -- the export-row and dataset-record checks -------------------------------------------------------

SHAS = st.one_of(st.text("0123456789abcdef", min_size=40, max_size=40), st.text(max_size=45),
                 st.integers())
PATHS = st.one_of(st.sampled_from(["src/x.py", "a.h", "x.js", "../x.py", "/etc/x.c", "a//b.go", "x.md"]),
                  st.text(max_size=20))
EXPORT_FIELDS = {
    "commit": SHAS,
    "repos": st.one_of(st.sampled_from(["acme/stats", "acme/a, acme/b", "acme/..", ""]), st.text(max_size=20),
                       st.lists(st.text(max_size=10), max_size=3), json_like(st.text(max_size=4))),
    "license": st.one_of(st.sampled_from(["mit", "MIT ", "gpl-3.0"]), json_like(st.text(max_size=4))),
    "old_file": PATHS, "new_file": PATHS,
    "unix_time": st.one_of(st.integers(), st.floats(), st.text(max_size=14), json_like(st.text(max_size=4))),
    "subject": st.one_of(st.text(max_size=30), json_like(st.text(max_size=4))),
    "message": st.one_of(st.text(max_size=30), json_like(st.text(max_size=4))),
}
EXPORT_RECORDS = st.one_of(
    st.fixed_dictionaries({}, optional=EXPORT_FIELDS),
    st.fixed_dictionaries(EXPORT_FIELDS),
    st.dictionaries(st.text(max_size=8), json_like(st.text(max_size=4)), max_size=5),
)
EXPORT_RULES = ExportRules("commits", frozenset(PERMISSIVE_LICENSES))


@fuzz(300)
@given(record=EXPORT_RECORDS)
@example(record={"commit": "a" * 40, "repos": {"x": 1}, "license": "mit", "old_file": "x.py",
                 "new_file": "x.py", "unix_time": 1, "subject": "Fix"})
@example(record={"commit": [[[]]] * 3, "repos": "acme/x", "license": "mit", "old_file": "x.py",
                 "new_file": "x.py", "unix_time": 1, "subject": "Fix"})
@example(record={"commit": "a" * 40, "repos": "acme/x", "license": "mit", "old_file": "x.py",
                 "new_file": "x.py", "unix_time": 1, "subject": "Fix\x00"})
@example(record={"commit": "a" * 40, "repos": "acme/x", "license": "mit", "old_file": "x.py",  # int64
                 "new_file": "x.py", "unix_time": 9.3e18, "subject": "Fix"})
@example(record={"commit": "a" * 40, "repos": "acme/x", "license": "mit", "old_file": "x.py",
                 "new_file": "x.py", "unix_time": 2**70, "subject": "Fix"})
def test_export_rows_are_kept_or_dropped_with_a_known_reason(record):
    row = EXPORT_RULES.row("fuzz.jsonl", 7, record, lambda: "fuzz.jsonl:3")
    assert row["drop_reason"] is None or row["drop_reason"] in EXPORT_REASONS, row["drop_reason"]
    if row["drop_reason"] == "malformed_row":
        assert row["message"].startswith("fuzz.jsonl:3: ")
    if row["drop_reason"] is None:
        assert row["language"] in {None, *(language.value for language in Language)}
        assert "\x00" not in row["message"] and ".." not in row["path"].split("/")
    to_table([row])  # every value fits the work schema


DATASET_RULES = DatasetRules("pairs", (("input", "prompt"), ("chosen", "a"), ("rejected", "b"),
                                       ("language", "lang"), ("aspect", "kind"), ("system", "system")))
DATASET_RECORDS = st.fixed_dictionaries({}, optional={
    name: st.one_of(st.text(max_size=20), st.sampled_from(["Python", "cpp", "runtime_eff", "Readability"]),
                    json_like(st.text(max_size=4)))
    for name in ("prompt", "a", "b", "lang", "kind", "system")})


@fuzz(200)
@given(record=DATASET_RECORDS)
@example(record={"prompt": "p", "a": "x" * 9000 + "\x00", "b": "y", "lang": "Python", "kind": "runtime_eff"})
def test_dataset_records_are_kept_or_dropped_with_a_known_reason(record):
    row = DATASET_RULES.row("fuzz.parquet", 0, record, lambda: "fuzz.parquet:1")
    assert row["drop_reason"] is None or row["drop_reason"] in DATASET_REASONS, row["drop_reason"]
    if row["drop_reason"] is None:
        assert not any("\x00" in row[name] for name in ("input", "chosen", "rejected"))
    to_table([row])


# -- the record readers -----------------------------------------------------------------------------


def _valid_bytes(kind: str) -> bytes:
    rows = [{"commit": "a" * 40, "repos": "acme/x", "license": "mit", "old_file": "x.py", "new_file": "x.py",
             "unix_time": n, "subject": f"Fix bug {n}"} for n in range(40)]
    text = "".join(json.dumps(row) + "\n" for row in rows).encode()
    if kind == "jsonl.gz":
        return gzip.compress(text)
    if kind == "parquet":
        sink = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows), sink, row_group_size=10)
        return sink.getvalue()
    return text


VALID = {kind: _valid_bytes(kind) for kind in ("jsonl", "jsonl.gz", "parquet")}
SUFFIX = {"jsonl": ".jsonl", "json": ".json", "jsonl.gz": ".jsonl.gz", "parquet": ".parquet"}


@st.composite
def damaged_files(draw) -> tuple[str, bytes]:
    """A file's kind and bytes: random, or a valid file truncated, bit-flipped or spliced."""
    kind = draw(st.sampled_from(["jsonl", "json", "jsonl.gz", "parquet"]))
    base = VALID["jsonl" if kind == "json" else kind]
    how = draw(st.sampled_from(["random", "truncate", "flip", "splice"]))
    if how == "random":
        return kind, draw(st.binary(max_size=400))
    data = bytearray(base)
    if how == "truncate":
        return kind, bytes(data[: draw(st.integers(0, len(data)))])
    if how == "flip":
        for offset in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=8)):
            data[offset] ^= draw(st.integers(1, 255))
        return kind, bytes(data)
    start = draw(st.integers(0, len(data)))
    return kind, bytes(data[:start]) + draw(st.binary(max_size=60)) + bytes(data[start:])


@fuzz(150)
@given(file=damaged_files(), chunk_bytes=st.sampled_from([7, 100, 1 << 20]))
@example(file=("jsonl", b"[" * 100_000), chunk_bytes=1 << 20)
@example(file=("jsonl", b'{"a": ' + b"[" * 100_000 + b"\n" + b"{}\n"), chunk_bytes=1 << 20)
@example(file=("jsonl", b'{"unix_time": ' + b"9" * 5000 + b"}\n"), chunk_bytes=1 << 20)
@example(file=("jsonl.gz", VALID["jsonl.gz"][: len(VALID["jsonl.gz"]) // 2]), chunk_bytes=1 << 20)
@example(file=("parquet", VALID["parquet"][:-9]), chunk_bytes=1 << 20)
def test_record_files_give_rows_counted_drops_or_an_error_naming_the_file(workdir, file, chunk_bytes):
    kind, data = file
    path = workdir / f"fuzz{SUFFIX[kind]}"
    path.write_bytes(data)
    label = f"in/fuzz{SUFFIX[kind]}"
    with time_limit(20):
        try:
            chunks = plan_chunks(str(path), label, chunk_bytes=chunk_bytes)
            rows = []
            for chunk in chunks:
                for table in ListRecords(EXPORT_RULES)(pa.Table.from_pylist([chunk.to_item()])):
                    rows.extend(table.to_pylist())
        except ValueError as error:  # a refused or corrupt file: the message names it
            assert label in str(error) or str(path) in str(error), str(error)
            return
    for row in rows:
        assert row["drop_reason"] is None or row["drop_reason"] in EXPORT_REASONS
        if row["drop_reason"] == "malformed_row":
            assert row["message"].startswith(f"{label}:"), row["message"]
    if kind in ("jsonl", "json"):  # every non-blank line is one row
        assert len(rows) == sum(1 for line in data.split(b"\n") if line.strip())


def test_a_malformed_line_is_named_by_its_line_in_every_chunk(workdir):
    lines = [json.dumps({"n": n}) if n % 5 else "{broken" for n in range(60)]
    path = workdir / "lines.jsonl"
    path.write_text("\n".join(lines) + "\n")
    for chunk_bytes in (1, 13, 100, 1 << 20):
        rows = [row for chunk in plan_chunks(str(path), "lines.jsonl", chunk_bytes=chunk_bytes)
                for table in ListRecords(EXPORT_RULES)(pa.Table.from_pylist([chunk.to_item()]))
                for row in table.to_pylist() if row["drop_reason"] == "malformed_row"
                and row["message"].endswith("not JSON: Expecting property name enclosed in double quotes")]
        assert [row["message"].split(":")[1] for row in rows] == [str(n + 1) for n in range(0, 60, 5)]


# -- .h resolution -------------------------------------------------------------------------------------

TREE_PATHS = st.lists(st.one_of(st.sampled_from(["a.c", "b.cpp", "x/y.cc", "x/z.c", "h.hpp", "q.h", "r.cxx"]),
                                st.text(max_size=15)), max_size=12)


@fuzz(150)
@given(tree=TREE_PATHS, header=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)),
       path=st.one_of(st.sampled_from(["q.h", "x/q.h", "x/y/q.h"]), st.text(max_size=15)))
@example(tree=[], header=b"template <" * 2000, path="a.h")
@example(tree=[], header=b"{" * 50_000, path="a.h")
@example(tree=[], header=b"\x00\xff" * 1000, path="a.h")
def test_headers_resolve_to_c_or_cpp(tree, header, path):
    with time_limit(20):
        context = HeaderContext.from_paths(tree)
        assert resolve_header_language(path, header, context) in (Language.C, Language.CPP)
        assert resolve_header_language(path, header) in (Language.C, Language.CPP)
        assert context.decide(path) in (None, Language.C, Language.CPP)


# -- bounded parsing ---------------------------------------------------------------------------------

LIMITS = ParseLimits(max_bytes=40_000, timeout_s=0.5)
HOSTILE_SOURCES = [b"(" * 39_000, b"{" * 39_000, b"[" * 39_000, b"<" * 39_000, b'"' * 39_000,
                   b"/*" * 19_000, b"x" * 40_001, b"\x00" * 1000, "é𝄞".encode() * 3000,
                   b"if (a) {" * 4000, b"def f():\n" + b" " * 30_000 + b"pass\n"]


@fuzz(120)
@given(language=st.sampled_from(list(Language)),
       source=st.one_of(st.binary(max_size=500), st.text(max_size=500).map(lambda t: t.encode("utf-8", "replace")),
                        st.sampled_from(HOSTILE_SOURCES)))
def test_parsing_gives_a_report_or_a_bounded_refusal(language, source):
    started = time.monotonic()
    with time_limit(10):
        try:
            report = inspect_source(source, language, LIMITS)
        except ParseLimitExceeded as refused:
            assert refused.reason in ("too_large", "parse_timeout")
            assert refused.reason != "too_large" or len(source) > LIMITS.max_bytes
        else:
            assert report.nbytes == len(source) and report.nodes >= 1
            assert 0.0 <= report.error_fraction <= 1.0
    # the time limit holds, with slack for a loaded 2-core machine
    assert time.monotonic() - started < LIMITS.timeout_s + 3.0


@pytest.mark.parametrize("language", list(Language))
def test_every_hostile_source_is_bounded_in_every_language(language):
    for source in HOSTILE_SOURCES:
        test_parsing_gives_a_report_or_a_bounded_refusal.hypothesis.inner_test(language, source)

