"""Clones and fetched objects live in the node-local scratch folder, never in the output.

Real builds (the session's Ray instance, and one CLI build with its own instance for the
environment variable, which Ray workers only read from the environment they start in), real git
repositories of three kinds (a local path, a bundle, a ``file://`` URL, which planning only
lists, so that its clone is made by a worker).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from codeprefs.core.files import file_sha256
from codeprefs.core.scratch import SCRATCH_ENV, ScratchError, clones_dir, remotes_dir, scratch_dir
from codeprefs.pipelines.build import build
from codeprefs.pipelines.manifest import ManifestError, parse_manifest
from codeprefs.pipelines.sources.gitrepo import GitError, RepoSpec, resolve
from codeprefs.pipelines.steps import ListCommits, repo_task
from tests.samples import commit_stats_history

ROOT = Path(__file__).resolve().parents[1]


# -- where the folder is -------------------------------------------------------------------------


def test_the_environment_overrides_the_manifest_which_overrides_the_default(tmp_path, monkeypatch):
    monkeypatch.delenv(SCRATCH_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert scratch_dir(None) == tmp_path / "xdg" / "codeprefs"
    assert (tmp_path / "xdg" / "codeprefs").is_dir()  # made when first resolved
    assert scratch_dir(str(tmp_path / "manifest")) == tmp_path / "manifest"
    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "node"))
    assert scratch_dir(str(tmp_path / "manifest")) == tmp_path / "node"
    assert clones_dir(str(tmp_path / "manifest")) == tmp_path / "node" / "clones"


def test_without_xdg_the_default_is_under_the_home_cache(tmp_path, monkeypatch):
    monkeypatch.delenv(SCRATCH_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/xdg")  # not absolute: ignored, as the XDG spec says
    assert scratch_dir(None) == tmp_path / "home" / ".cache" / "codeprefs"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert scratch_dir("~/scratch") == tmp_path / "home" / "scratch"  # ~ expanded on the node


def test_an_unusable_scratch_folder_is_an_error_naming_it_and_where_it_was_set(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(SCRATCH_ENV, str(blocker / "scratch"))
    with pytest.raises(ScratchError, match=f"{SCRATCH_ENV}={blocker}/scratch cannot be used"):
        scratch_dir(None)
    monkeypatch.setenv(SCRATCH_ENV, "relative/scratch")
    with pytest.raises(ScratchError, match=f"{SCRATCH_ENV}=relative/scratch is a relative path"):
        scratch_dir(None)


@pytest.mark.parametrize(("written", "message"), [
    ("scratch", "relative; give an absolute path or one under ~"),
    ("s3://bucket/scratch", "is a URL"),
    ("  ", "is empty"),
])
def test_the_manifest_refuses_a_scratch_folder_no_node_can_resolve(tmp_path, written, message):
    with pytest.raises(ManifestError, match=rf"ray\.scratch_dir: .*{message}"):
        parse_manifest({"name": "m", "sources": [{"type": "git", "repos": ["https://example.com/a.git"]}],
                        "ray": {"scratch_dir": written}}, tmp_path)


def test_remotes_of_different_templates_never_share_a_folder(tmp_path):
    one = remotes_dir(str(tmp_path), "https://host/mirror-a/{repo}.git")
    other = remotes_dir(str(tmp_path), "https://host/mirror-b/{repo}.git")
    assert one.parent == other.parent == tmp_path / "remotes" and one != other
    assert remotes_dir(str(tmp_path), "https://host/mirror-a/{repo}.git") == one


# -- builds --------------------------------------------------------------------------------------


@pytest.fixture
def three_repos(make_repo, tmp_path) -> list[str]:
    """The same small history as a local path, a bundle and a ``file://`` URL, under other names."""
    local = make_repo("stats-local")
    commit_stats_history(local)
    bundled = make_repo("work-bundle")
    commit_stats_history(bundled)
    bundled.commit("Fix bug: mean of nothing is zero", {"stats.py": "def mean(values):\n    return 0\n"})
    bundled.git("bundle", "create", "-q", str(tmp_path / "stats-bundle.bundle"), "--all")
    hosted = make_repo("work-url")
    commit_stats_history(hosted)
    subprocess.run(["git", "clone", "-q", "--bare", str(hosted.path), str(tmp_path / "stats-url.git")],
                   check=True)
    return [str(local.path), "stats-bundle.bundle", f"file://{tmp_path / 'stats-url.git'}"]


def _manifest(repos: list[str], base: Path, scratch: Path) -> object:
    return parse_manifest({"name": "scratch-run", "sources": [{"type": "git", "repos": repos}],
                           "ray": {"scratch_dir": str(scratch)}}, base)


def _git_dirs(folder: Path) -> list[str]:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*.git"))


def _shards(output: Path) -> dict[str, str]:
    return {path.name: file_sha256(path) for path in sorted((output / "data").glob("*.parquet"))}


def test_clones_go_to_the_scratch_folder_and_another_one_clones_again(ray_local, tmp_path, three_repos):
    first_scratch, second_scratch = tmp_path / "node-a", tmp_path / "node-b"
    first = build(_manifest(three_repos, tmp_path, first_scratch), tmp_path / "out-a")
    clones = _git_dirs(first_scratch / "clones")
    assert [name.rsplit("-", 1)[0] for name in clones] == ["stats-bundle", "stats-local", "stats-url"]
    assert all(len(name.rsplit("-", 1)[1]) == len("0123456789abcdef.git") for name in clones)
    assert _git_dirs(tmp_path / "out-a") == []  # no clone, no remote in the output
    assert not (tmp_path / "out-a" / ".cache" / "remotes").exists()
    assert first["rows"]["kept"] >= 3
    assert {item["repo"]: item["status"] for item in first["inputs"]} == {
        "stats-local": "ok", "stats-bundle": "ok", "stats-url": "ok"}

    # A node with its own, empty scratch folder: every clone is made again, at the same commits.
    second = build(_manifest(three_repos, tmp_path, second_scratch), tmp_path / "out-b")
    assert _git_dirs(second_scratch / "clones") == clones
    assert _git_dirs(tmp_path / "out-b") == []
    assert second["inputs"] == first["inputs"]
    assert _shards(tmp_path / "out-b") == _shards(tmp_path / "out-a")  # byte for byte
    assert first["manifest"]["ray"]["scratch_dir"] == "node-a"  # relative to the manifest, as paths are


def test_an_output_folder_holding_clones_of_an_earlier_version_is_still_ours(ray_local, tmp_path, three_repos):
    out = tmp_path / "out"
    old_clone = out / ".cache" / "stats-local-0123456789abcdef.git"
    (old_clone / "objects").mkdir(parents=True)
    (old_clone / "HEAD").write_text("ref: refs/heads/main\n")
    (out / ".cache" / "stats-local-0123456789abcdef.git.lock").write_text("")
    record = build(_manifest(three_repos[:1], tmp_path, tmp_path / "scratch"), out)  # not refused as foreign
    assert record["rows"]["kept"] >= 1
    assert (old_clone / "HEAD").read_text() == "ref: refs/heads/main\n"  # left as it was
    assert _git_dirs(tmp_path / "scratch" / "clones")[0].startswith("stats-local-")


def test_the_environment_variable_overrides_the_manifest_on_the_workers(tmp_path, make_repo):
    hosted = make_repo("work")
    commit_stats_history(hosted)
    bare = tmp_path / "stats-url.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(hosted.path), str(bare)], check=True)
    manifest = tmp_path / "manifest.yaml"  # a URL: planning only lists it, the worker clones it
    manifest.write_text(yaml.safe_dump({"name": "env-run", "sources": [{"type": "git", "repos": [f"file://{bare}"]}],
                                        "ray": {"num_cpus": 1, "scratch_dir": str(tmp_path / "from-manifest")}}))
    ray_parent = tempfile.mkdtemp(prefix="cpr-t-", dir="/tmp")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CODEPREFS_RAY_TMPDIR": ray_parent,
           SCRATCH_ENV: str(tmp_path / "from-env")}
    env.pop("RAY_ADDRESS", None)
    try:
        done = subprocess.run([sys.executable, "pipelines/build_prefs.py", "--manifest", str(manifest),
                               "--output", str(tmp_path / "out")], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=600)
    finally:
        shutil.rmtree(ray_parent, ignore_errors=True)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert [name.rsplit("-", 1)[0] for name in _git_dirs(tmp_path / "from-env" / "clones")] == ["stats-url"]
    assert not (tmp_path / "from-manifest").exists()
    assert _git_dirs(tmp_path / "out") == []
    assert list((tmp_path / "out" / "data").glob("train-*.parquet"))


# -- a node that clones again --------------------------------------------------------------------


def test_a_pinned_commit_the_source_lost_fails_naming_the_repository(make_repo, tmp_path):
    work = make_repo("work")
    commit_stats_history(work)
    bare = tmp_path / "stats-url.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work.path), str(bare)], check=True)
    pinned = resolve(RepoSpec.parse(f"file://{bare}", tmp_path))  # planning, on the driver
    # The history is rewritten before a worker on another node clones it.
    work.git("reset", "-q", "--hard", "HEAD~1")
    work.git("push", "-q", "--force", str(bare), "main")
    for command in (["reflog", "expire", "--expire=now", "--all"], ["gc", "-q", "--prune=now"]):
        subprocess.run(["git", "-C", str(bare), *command], check=True)
    task = repo_task(pinned, "commits", None, "fail")
    with pytest.raises(GitError, match=rf"stats-url: file://{bare} no longer has commit {pinned.sha}, "
                                       r"to which 'HEAD' was pinned when the build was planned"):
        list(ListCommits(str(tmp_path / "node-b")).rows_for(task))
    skipped = list(ListCommits(str(tmp_path / "node-b")).rows_for({**task, "on_error": "skip"}))
    assert [(row["drop_reason"], row["repo"]) for row in skipped] == [("repo_error", "stats-url")]
    assert pinned.sha in skipped[0]["message"]


def test_a_local_repository_missing_on_the_node_is_named(make_repo, tmp_path):
    repo = make_repo("stats-local")
    commit_stats_history(repo)
    pinned = resolve(RepoSpec.parse(str(repo.path), tmp_path), cache_dir=tmp_path / "driver" / "clones")
    shutil.rmtree(repo.path)  # this node does not have the folder, nor a clone of it
    with pytest.raises(GitError, match=rf"stats-local: {repo.path} does not exist on this node .*same path on every node"):
        list(ListCommits(str(tmp_path / "node-b")).rows_for(repo_task(pinned, "commits", None, "fail")))
    # the driver's node still has its clone from planning, and mines it
    rows = list(ListCommits(str(tmp_path / "driver")).rows_for(repo_task(pinned, "commits", None, "fail")))
    assert [row["message"].strip() for row in rows][0] == "Speed up mean with the builtin sum"
