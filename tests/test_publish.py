"""Publishing: the dataset card, stats, offline loading, and uploads against a stand-in Hub."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import datasets
import httpx2
import huggingface_hub
import pyarrow.parquet as pq
import pytest
import yaml

from codeprefs.card import write_card
from codeprefs.publish import PublishError, plan_upload, publish
from codeprefs.stats import funnel_table, language_by_criterion
from tests.fakehub import hub  # noqa: F401  (a fixture)
from tests.s3server import s3_bucket, s3_server  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[1]
PY_V1 = "def area(w, h):\n    result = w * h\n    return result + 1\n"
PY_V2 = "def area(w, h):\n    result = w * h\n    return result\n"
GO_V1 = "package geo\n\nfunc Area(w int, h int) int {\n\treturn w + h\n}\n"
GO_V2 = "package geo\n\nfunc Area(w int, h int) int {\n\treturn w * h\n}\n"


@pytest.fixture(scope="module")
def built(tmp_path_factory, ray_local):
    """One real build shared by the tests of this module (they copy it before changing it)."""
    from codeprefs.pipelines.manifest import parse_manifest
    from codeprefs.pipelines.build import build
    from tests.conftest import GitRepo

    base = tmp_path_factory.mktemp("publish")
    repo = GitRepo(base / "repo")
    repo.commit("Add geometry helpers", {"area.py": PY_V1, "area.go": GO_V1})
    repo.commit("Fix bug in area: it added one", {"area.py": PY_V2})
    repo.commit("Fix bug in Go Area: used + instead of *", {"area.go": GO_V2})
    repo.commit("wip", {"area.py": PY_V2 + "\n"})
    manifest = parse_manifest({"name": "geo", "sources": [{"type": "git", "repos": [str(repo.path)],
                                                            "license": "mit"}],
                               "output": {"max_shard_bytes": 300}}, base)
    build(manifest, base / "out")
    return base / "out"


@pytest.fixture
def output(built, tmp_path):
    copy = tmp_path / "out"
    subprocess.run(["cp", "-r", str(built), str(copy)], check=True)
    return copy


def test_stats_tables(built):
    table = language_by_criterion(built)
    assert table.columns[0] == "language" and table.columns[-1] == "total"
    python = table.filter(table["language"] == "Python")
    assert python["Functional_Correctness"][0] == 1 and python["total"][0] == 1
    assert table.filter(table["language"] == "total")["total"][0] == 2
    assert table.height == 9  # eight languages and the total row
    funnel = funnel_table(built)
    assert funnel["stage"].to_list()[0] == "list"
    assert "message_too_short: 1" in funnel.filter(funnel["stage"] == "message")["reasons"][0]


def test_card_metadata_and_offline_load(output, monkeypatch):
    card = write_card(output)
    text = card.read_text()
    header = yaml.safe_load(text.split("---")[1])
    assert header["configs"][0]["data_files"] == [{"split": "train", "path": "data/train-*"}]
    assert header["license"] == "mit"
    assert header["dataset_info"]["splits"][0]["num_examples"] == 2
    assert {"name": "aspects", "list": "string"} in header["dataset_info"]["features"]
    assert "| Python | 1 | 0 | 0 | 0 | 0 | 1 |" in text
    assert "message_too_short: 1" in text
    for plot in ("assets/pairs_by_language_and_criterion.png", "assets/lengths.png"):
        assert (output / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert plot in text

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    loaded = datasets.load_dataset(str(output))
    assert list(loaded) == ["train"]
    assert loaded["train"].num_rows == 2
    assert loaded["train"].features["aspects"] == datasets.List(datasets.Value("string"))
    assert sorted(loaded["train"]["language"]) == ["Go", "Python"]


def test_dry_run_lists_every_file_and_sends_nothing(output, hub):
    lines: list[str] = []
    plan = publish(output, "org/geo", dry_run=True, log=lines.append)
    shards = sorted(p.name for p in (output / "data").glob("*.parquet"))
    for name in ["README.md", "run.json", "assets/lengths.png", *[f"data/{s}" for s in shards]]:
        assert any(line.strip().startswith(f"add {name} (") for line in lines), name
    assert lines[0] == "create dataset repository org/geo (private=False) if missing"
    assert lines[-1] == "dry run: nothing was sent to the Hub"
    assert hub.requests == []
    assert len(plan.files) == 4 + len(shards)


def test_upload_commits_every_file_then_verifies(output, hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_value")
    lines: list[str] = []
    publish(output, "org/geo", private=True, log=lines.append)
    files = hub.repos["org/geo"]
    assert hub.private["org/geo"] is True
    for path in [*(f"data/{p.name}" for p in (output / "data").glob("*.parquet")), "README.md",
                 "run.json", "assets/lengths.png", "assets/pairs_by_language_and_criterion.png"]:
        assert files[path] == (output / path).read_bytes(), path
    assert all(len(c["added"]) <= 50 for c in hub.commits)
    assert "hf_secret_token_value" not in "\n".join(lines)
    assert "hf_secret_token_value" not in (output / "run.json").read_text()
    assert "hf_secret_token_value" not in (output / "README.md").read_text()

    # A second publish finds everything in place and commits nothing.
    hub.commits.clear()
    publish(output, "org/geo", log=lines.append)
    assert hub.commits == []


def test_interrupted_upload_resumes_and_stale_shards_are_deleted(output, hub, monkeypatch):
    monkeypatch.setattr("codeprefs.publish.MAX_FILES_PER_COMMIT", 2)
    hub.fail_commit_after = 1
    with pytest.raises(PublishError, match="the Hub refused"):
        publish(output, "org/geo", log=lambda _: None)
    first = set(hub.repos["org/geo"])
    assert len(first) == 2
    hub.repos["org/geo"]["data/train-00007-of-00009.parquet"] = b"left over from an older run"
    hub.fail_commit_after = None
    hub.commits.clear()
    publish(output, "org/geo", log=lambda _: None)
    added = [path for commit in hub.commits for path in commit["added"]]
    assert not set(added) & first  # already there: not sent again
    assert "data/train-00007-of-00009.parquet" not in hub.repos["org/geo"]
    assert hub.commits[-1]["deleted"] == ["data/train-00007-of-00009.parquet"]


def test_network_down_is_a_clear_error(output):
    def refuse(request):
        raise httpx2.ConnectError("connection refused", request=request)

    huggingface_hub.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(refuse)))
    try:
        with pytest.raises(PublishError, match="cannot reach the Hub"):
            publish(output, "org/geo", log=lambda _: None)
    finally:
        huggingface_hub.set_client_factory(lambda: httpx2.Client())


def test_modified_shard_is_refused(output):
    write_card(output)
    shard = next((output / "data").glob("*.parquet"))
    table = pq.read_table(shard)
    pq.write_table(table.slice(0, 0), shard)
    with pytest.raises(PublishError, match="changed since the run wrote it"):
        plan_upload(output, "org/geo")


def test_publish_and_stats_commands(output, hub):
    cli = [sys.executable, "-m", "codeprefs.cli"]
    stats = subprocess.run([*cli, "stats", str(output)], capture_output=True, text=True, cwd=ROOT)
    assert stats.returncode == 0, stats.stderr
    assert "Python" in stats.stdout and "message_too_short" in stats.stdout
    dry = subprocess.run([*cli, "publish", str(output), "--repo", "org/geo", "--dry-run"],
                         capture_output=True, text=True, cwd=ROOT)
    assert dry.returncode == 0, dry.stderr
    assert "add data/train-00000-of-" in dry.stdout and "nothing was sent" in dry.stdout
    bad = subprocess.run([*cli, "publish", str(output), "--repo", "no-slash", "--dry-run"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "org/name" in bad.stderr


def test_publish_reads_an_output_in_object_storage(output, hub, s3_bucket, monkeypatch):
    """`codeprefs publish s3://...` publishes the same files as from disk, names the URL (never its
    temporary copy) and leaves the card beside the remote output, as a local publish does."""
    import s3fs
    from typer.testing import CliRunner

    from codeprefs.cli import app
    from tests.s3server import upload

    monkeypatch.setenv("COLUMNS", "200")
    url = f"{s3_bucket}/builds/geo"
    upload(output, url)
    result = CliRunner().invoke(app, ["publish", url, "--repo", "org/geo"])
    assert result.exit_code == 0, result.output
    assert "published 6 file(s) to datasets/org/geo" in result.output
    assert "codeprefs-remote-" not in result.output
    files = hub.repos["org/geo"]
    for shard in (output / "data").glob("*.parquet"):
        assert files[f"data/{shard.name}"] == shard.read_bytes()
    assert hub.commits and all("publish geo (" in commit["summary"] for commit in hub.commits)
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    remote = url.removeprefix("s3://")
    assert fs.cat_file(f"{remote}/README.md") == files["README.md"]
    assert fs.cat_file(f"{remote}/assets/lengths.png") == files["assets/lengths.png"]

    missing = CliRunner().invoke(app, ["publish", f"{s3_bucket}/builds/none", "--repo", "org/geo"])
    assert missing.exit_code == 2 and f"{s3_bucket}/builds/none: no such file or folder" in missing.output
