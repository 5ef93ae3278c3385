"""A URL where a path is expected is an error naming it, never a relative folder (``s3:/bucket/q``);
manifest inputs take object-storage URLs, and name a scheme nothing reads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from codeprefs.core.locations import RemoteLocationError, require_local, url_scheme
from codeprefs.pipelines.manifest import ManifestError, load_manifest
from codeprefs.trainers.data import DataError, load_pairs

ROOT = Path(__file__).resolve().parents[1]
URLS = ("s3://bucket/q", "gs://bucket/q", "hf://datasets/org/name", "az://c/q")


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_schemes_are_read_from_urls_only():
    assert [url_scheme(text) for text in ("s3://b/k", "HF://datasets/o/n", "file:///x", "gs://b")] == \
        ["s3", "hf", "file", "gs"]
    assert [url_scheme(text) for text in ("out/q", "/abs/q", "s3:/b/q", "c:\\x", "weird:name/x")] == \
        [None, None, None, None, None]
    assert require_local("out/s3://not-a-scheme") == "out/s3://not-a-scheme"
    with pytest.raises(RemoteLocationError, match=r"--output 's3://b/k' is a URL \(s3://\)"):
        require_local("s3://b/k", "--output")
    with pytest.raises(RemoteLocationError, match="write the local path itself"):
        require_local("file:///tmp/out")


@pytest.mark.parametrize("args", [
    ["-m", "codeprefs.cli", "build", "--manifest", str(ROOT / "manifests" / "quickstart.yaml"), "--output", URLS[3]],
    ["pipelines/build_prefs.py", "--manifest", "manifests/quickstart.yaml", "--output", URLS[1]],
    ["-m", "codeprefs.cli", "stats", URLS[3]],
    ["-m", "codeprefs.cli", "runs", URLS[3]],
    ["-m", "codeprefs.cli", "publish", URLS[3], "--repo", "org/name", "--dry-run"],
    ["-m", "codeprefs.cli", "build", "--manifest", "s3://bucket/run.yaml"],
    ["-m", "codeprefs.trainers.train", "--data", URLS[3], "--model", "m", "--output", "ckpt"],
    ["-m", "codeprefs.trainers.train", "--data", "pairs", "--model", "m", "--output", URLS[1]],
    ["-m", "codeprefs.trainers.evaluate", "--data", URLS[3], "--model", "m", "--output", "eval"],
    ["-m", "codeprefs.trainers.evaluate", "--data", "pairs", "--model", "m", "--output", URLS[3]],
], ids=["build", "build_prefs", "stats", "runs", "publish", "manifest", "train-data", "train-output",
        "evaluate-data", "evaluate-output"])
def test_every_command_refuses_a_url_for_a_path_and_writes_nothing(tmp_path, args):
    """The trainers' outputs are local only; build writes and stats, runs, publish and --data
    read object storage (tests/test_object_storage.py, tests/test_publish.py), and here get a
    scheme whose filesystem package (adlfs for az://, gcsfs for gs://) is not installed."""
    if args[0] == "pipelines/build_prefs.py":
        args = [str(ROOT / args[0]), args[1], str(ROOT / args[2]), *args[3:]]
    result = run(args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    url = next(arg for arg in args if "://" in arg)
    assert url in result.stderr
    assert "URL" in result.stderr
    assert list(tmp_path.iterdir()) == []  # no s3:/bucket/q folder, no out/ folder


@pytest.mark.parametrize(("source", "key"), [
    ("  - type: export\n    path: gs://bucket/commits.jsonl\n", "sources.0.path"),
    ("  - type: dataset\n    path: [az://container/prefs]\n", "sources.0.path"),
    ("  - type: solutions\n    path: gs://bucket/solutions.jsonl\n    language: Go\n"
     "    fields: {prompt: p, solution: s, tests: t}\n    harness: humaneval\n", "sources.0.path"),
    ("  - type: export\n    path: commits.jsonl\n    allowlists: {Go: 'gs://bucket/go.json'}\n",
     "sources.0.export.allowlists"),
    ("  - type: export\n    path: file:///tmp/commits.jsonl\n", "sources.0.path"),
    ("  - type: export\n    path: commits.jsonl\n    allowlists: {Go: 'file:///tmp/go.json'}\n",
     "sources.0.export.allowlists"),
])
def test_manifest_inputs_name_a_url_nothing_reads(tmp_path, source, key):
    """Inputs may be URLs (tests/test_inputs.py reads them from S3), but a scheme whose filesystem
    package is not installed (gcsfs for gs://, adlfs for az://), or a file:// URL, is an error
    naming the key and the URL when the manifest is loaded."""
    (tmp_path / "commits.jsonl").write_text("")
    manifest = tmp_path / "run.yaml"
    manifest.write_text(f"name: r\nsources:\n{source}")
    with pytest.raises(ManifestError) as caught:
        load_manifest(manifest)
    message = str(caught.value)
    assert key in message and "URL" in message and "run.yaml" in message
    assert ("file://" if "file://" in source else "://bucket/" if "gs://" in source else "az://") in message


def test_manifest_inputs_keep_object_storage_urls_as_written(tmp_path):
    """A plain URL costs no request when the manifest is loaded (it is read when planned)."""
    manifest = tmp_path / "run.yaml"
    manifest.write_text("name: r\nsources:\n  - type: export\n    path: s3://bucket/commits.jsonl\n"
                        "    allowlists: {Go: 's3://bucket/go.json'}\n"
                        "  - type: dataset\n    path: [hf://datasets/org/prefs/train.parquet]\n")
    export, dataset = load_manifest(manifest).sources
    assert export.path == ["s3://bucket/commits.jsonl"] and export.allowlists == {"Go": "s3://bucket/go.json"}
    assert dataset.path == ["hf://datasets/org/prefs/train.parquet"]


def test_decontamination_benchmarks_and_llm_cache_refuse_urls(tmp_path):
    manifest = tmp_path / "run.yaml"
    manifest.write_text("name: r\nsources:\n  - type: git\n    repos: [https://example.com/x.git]\n"
                        "decontaminate:\n  benchmarks: [gs://bucket/bench.jsonl]\n")
    with pytest.raises(ManifestError, match=r"decontaminate\.benchmarks: benchmark gs://bucket/bench.jsonl: "
                                            r"reading gs:// URLs needs a package"):
        load_manifest(manifest)
    manifest.write_text("name: r\nsources:\n  - type: git\n    repos: [https://example.com/x.git]\n"
                        "synthesis:\n  llm: {base_url: 'http://127.0.0.1:1/v1', model: m, cache_dir: 's3://b/c'}\n")
    with pytest.raises(ManifestError, match=r"synthesis\.llm\.cache_dir"):
        load_manifest(manifest)


def test_git_remotes_stay_urls(tmp_path):
    manifest = tmp_path / "run.yaml"
    manifest.write_text("name: r\nsources:\n  - type: git\n"
                        "    repos: [https://example.com/x.git, 'ssh://git@example.com/y.git', git@example.com:z.git]\n")
    assert load_manifest(manifest).sources[0].repos == [
        "https://example.com/x.git", "ssh://git@example.com/y.git", "git@example.com:z.git"]


def test_the_trainers_loader_names_a_url_it_cannot_read():
    # gcsfs is not installed: the URL is named with what is missing, never read as a folder
    with pytest.raises(DataError, match=r"pairs source gs://bucket/pairs: reading gs:// URLs needs a package"):
        load_pairs("gs://bucket/pairs")
    with pytest.raises(DataError, match=r"pairs source 'file:///tmp/pairs' is a file:// URL"):
        load_pairs("file:///tmp/pairs")
