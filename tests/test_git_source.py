"""The git source on real repositories: resolving, cloning, history walking, per-commit drops."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from codeprefs.pipelines.sources.gitrepo import (
    GitError,
    RepoSpec,
    iter_commits,
    materialize,
    parse_log,
    read_blobs,
    resolve,
)
from codeprefs.pipelines.steps import (
    AssemblePairs,
    FilterMessages,
    LabelCriteria,
    ListCommits,
    ReadContents,
    ValidatePairs,
    repo_task,
)

MEAN_BUGGY = "def mean(values):\n    total = 0\n    for v in values:\n        total += v\n    return total / len(values) - 1\n"
MEAN_FIXED = "def mean(values):\n    total = 0\n    for v in values:\n        total += v\n    return total / len(values)\n"


def list_rows(repo_path: Path, tmp_path: Path, **task_options) -> list[dict]:
    resolved = resolve(RepoSpec.parse(str(repo_path), tmp_path))
    task = repo_task(resolved, "commits", task_options.get("max_commits"), task_options.get("on_error", "fail"))
    return list(ListCommits(str(tmp_path / "cache")).rows_for(task))


def by_message(rows: list[dict]) -> dict[str, dict]:
    return {row["message"].strip(): row for row in rows}


def test_structural_drop_reasons(make_repo, tmp_path):
    repo = make_repo()
    repo.commit("Add stats module", {"stats.py": MEAN_BUGGY, "README.md": "stats\n"})
    repo.commit("Fix bug: off-by-one in mean", {"stats.py": MEAN_FIXED})
    repo.commit("Touch two files in one go", {"stats.py": MEAN_FIXED + "\n", "other.py": "x = 1\n"})
    repo.rename("other.py", "renamed.py", "Rename helper module for clarity")
    repo.commit("Describe the project better", {"README.md": "stats helpers\n"})
    repo.commit("Add a brand new module file", {"new.py": "y = 2\n"})
    repo.commit("Delete the brand new module", remove=("new.py",))
    os.symlink("stats.py", repo.path / "link.py")
    repo.commit("Add symlink to stats module")
    os.unlink(repo.path / "link.py")
    os.symlink("renamed.py", repo.path / "link.py")
    repo.commit("Point symlink at the renamed module")
    repo.commit("Empty commit with no changes at all")
    repo.git("checkout", "-q", "-b", "side")
    repo.commit("Side branch: fix crash in mean", {"stats.py": MEAN_FIXED + "# side\n"})
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "-m", "Join side branch work", "side")

    rows = by_message(list_rows(repo.path, tmp_path))
    expected = {
        "Add stats module": "root_commit",
        "Touch two files in one go": "multiple_files",
        "Rename helper module for clarity": "not_modified_in_place",
        "Describe the project better": "not_target_language",
        "Add a brand new module file": "not_modified_in_place",
        "Delete the brand new module": "not_modified_in_place",
        "Add symlink to stats module": "not_modified_in_place",
        "Point symlink at the renamed module": "not_regular_file",
        "Empty commit with no changes at all": "no_file_change",
        "Join side branch work": "merge_commit",
    }
    for message, reason in expected.items():
        assert rows[message]["drop_stage"] == "list", message
        assert rows[message]["drop_reason"] == reason, message
    kept = rows["Fix bug: off-by-one in mean"]
    assert kept["drop_reason"] is None
    assert kept["language"] == "Python" and kept["path"] == "stats.py"
    assert kept["parent"] == repo.git("rev-parse", f"{kept['commit']}^").strip()
    assert kept["unix_time"] > 1_600_000_000
    assert rows["Side branch: fix crash in mean"]["drop_reason"] is None  # reachable via the merge
    assert len(rows) == 12


def test_rows_flow_through_every_stage(make_repo, tmp_path):
    repo = make_repo()
    repo.commit("Add stats module", {"stats.py": MEAN_BUGGY})
    repo.commit("Fix bug: off-by-one in mean", {"stats.py": MEAN_FIXED})
    repo.commit("wip", {"stats.py": MEAN_FIXED + "\n\n"})
    repo.commit("Tidy the module a little", {"stats.py": MEAN_FIXED + "# tidy\n"})
    repo.commit("Fix bug in docstring encoding (latin-1)", {"stats.py": "# caf\xe9\n".encode("latin-1") + MEAN_FIXED.encode()})
    repo.commit("Fix bug: store a binary blob", {"stats.py": b"\x00\x01binary" + MEAN_FIXED.encode()})
    rows = list_rows(repo.path, tmp_path)
    for step in (FilterMessages(), LabelCriteria(), ReadContents(max_bytes=1 << 20), AssemblePairs(),
                 ValidatePairs()):
        rows = step.run(rows)
    outcome = {row["message"].strip(): (row["drop_stage"], row["drop_reason"]) for row in rows}
    assert outcome["Fix bug: off-by-one in mean"] == (None, None)
    assert outcome["wip"] == ("message", "message_too_short")
    assert outcome["Tidy the module a little"] == ("criteria", "no_criterion")
    assert outcome["Fix bug: store a binary blob"] == ("content", "binary")
    assert outcome["Fix bug in docstring encoding (latin-1)"] == ("content", "non_utf8")

    pair = next(r for r in rows if r["drop_reason"] is None)
    assert pair["chosen"] == MEAN_FIXED and pair["rejected"] == MEAN_BUGGY
    assert pair["aspect"] == "Functional_Correctness" and "Functional_Correctness" in pair["aspects"]
    assert "Fix bug: off-by-one in mean" in pair["input"] and "stats.py" in pair["input"]
    assert "Language: Python" in pair["input"]
    assert pair["chosen_error_fraction"] == 0.0 and pair["chosen_nodes"] > 10
    assert pair["row_bytes"] > len(MEAN_FIXED) + len(MEAN_BUGGY)
    assert len(pair["id"]) == 32 and len(pair["dedupe_key"]) == 64


def test_binary_and_oversized_files_are_dropped_at_the_content_stage(make_repo, tmp_path):
    repo = make_repo()
    repo.commit("Add module file", {"big.py": "x = 1\n", "bin.py": "y = 2\n"})
    repo.commit("Fix bug: generate the table", {"big.py": "x = [\n" + "    1,\n" * 50_000 + "]\n"})
    repo.commit("Fix bug in the encoder", {"bin.py": b"y = 2\n\x00\x00\x00"})
    rows = list_rows(repo.path, tmp_path)
    rows = ReadContents(max_bytes=64 * 1024).run(LabelCriteria().run(rows))
    outcome = {row["message"].strip(): row["drop_reason"] for row in rows}
    assert outcome["Fix bug: generate the table"] == "file_too_large"
    assert outcome["Fix bug in the encoder"] == "binary"


def test_a_function_of_a_file_over_the_side_bound_is_still_paired(make_repo, tmp_path):
    """With function scope the side is the definition: a file larger than
    filters.validation.max_bytes (a monolith such as lodash.js) is read up to pairs.max_file_bytes
    and gives its changed function; with scope: file the file is the side and is not read."""
    from codeprefs.pipelines.manifest import parse_manifest
    from codeprefs.pipelines.sources.commits import CommitSteps

    filler = "".join(f"def helper_{i}(x):\n    return x + {i}\n\n\n" for i in range(4000))  # ~130 KB
    repo = make_repo()
    repo.commit("Add module file", {"stats.py": filler + MEAN_BUGGY})
    repo.commit("Fix bug: off-by-one in mean", {"stats.py": filler + MEAN_FIXED})
    base = {"name": "big-file", "sources": [{"type": "git", "repos": [str(repo.path)]}],
            "filters": {"validation": {"max_bytes": 64 * 1024}}}
    for scope, expected in (("function", None), ("file", "file_too_large")):
        manifest = parse_manifest({**base, "pairs": {"scope": scope}}, tmp_path)
        steps = CommitSteps.from_manifest(manifest)
        assert steps.max_bytes == (1 << 20 if scope == "function" else 64 * 1024)
        rows = list_rows(repo.path, tmp_path)
        for step in (*steps.filters(None), ReadContents(max_bytes=steps.max_bytes), *steps.pairing(),
                     ValidatePairs(manifest.filters.validation)):
            rows = step.run(rows)
        [row] = [r for r in rows if r["message"].startswith("Fix bug")]
        assert row["drop_reason"] == expected
        if expected is None:
            assert (row["scope"], row["scope_name"]) == ("function", "mean")
            assert row["chosen"] == MEAN_FIXED and row["rejected"] == MEAN_BUGGY
    small = parse_manifest({**base, "pairs": {"max_file_bytes": 100_000}}, tmp_path)
    rows = list_rows(repo.path, tmp_path)
    for step in (*CommitSteps.from_manifest(small).filters(None), ReadContents(max_bytes=100_000)):
        rows = step.run(rows)
    assert [r["drop_reason"] for r in rows if r["message"].startswith("Fix bug")] == ["file_too_large"]


def test_max_commits_walks_only_the_newest(make_repo, tmp_path):
    repo = make_repo()
    for index in range(5):
        repo.commit(f"Fix bug number {index} in mean", {"stats.py": MEAN_FIXED + "#" * index + "\n"})
    rows = list_rows(repo.path, tmp_path, max_commits=2)
    assert [r["message"].strip() for r in rows] == ["Fix bug number 4 in mean", "Fix bug number 3 in mean"]


def test_log_parser_handles_awkward_messages_and_paths(make_repo):
    repo = make_repo()
    repo.commit("Add file", {"dir with space/ñame\nnewline.py": "a = 1\n"})
    message = "Fix bug\x1f with unit separator\n\nand \x1e record separator in body"
    sha = repo.commit(message, {"dir with space/ñame\nnewline.py": "a = 2\n"})
    commits = list(iter_commits(repo.path, sha, "test"))
    assert len(commits) == 2
    assert commits[0].message.strip() == message
    assert commits[0].changes[0].path == "dir with space/ñame\nnewline.py"
    assert commits[0].changes[0].status == "M"


def test_parse_log_rejects_garbage():
    with pytest.raises(GitError, match="unexpected git log output"):
        list(parse_log([b"garbage"]))


def test_missing_path_and_non_repository_are_named(tmp_path):
    with pytest.raises(GitError, match="no such repository path"):
        resolve(RepoSpec.parse(str(tmp_path / "nope"), tmp_path))
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(GitError, match="not a git repository"):
        resolve(RepoSpec.parse(str(plain), tmp_path))


def test_empty_repository_resolves_as_empty(make_repo, tmp_path):
    repo = make_repo("empty")
    resolved = resolve(RepoSpec.parse(str(repo.path), tmp_path))
    assert resolved.status == "empty" and resolved.sha is None


def test_corrupt_repository_is_an_error_naming_it(make_repo, tmp_path):
    repo = make_repo("corrupt")
    sha = repo.commit("Add file", {"a.py": "a = 1\n"})
    object_file = repo.path / ".git" / "objects" / sha[:2] / sha[2:]
    object_file.chmod(0o644)
    object_file.write_bytes(b"this is not a zlib stream")
    with pytest.raises(GitError, match="corrupt") as caught:
        resolve(RepoSpec.parse(str(repo.path), tmp_path))
    assert str(repo.path) in str(caught.value)


def test_history_with_a_missing_object_fails_naming_the_repository(make_repo, tmp_path):
    repo = make_repo("holes")
    first = repo.commit("Add file", {"a.py": "a = 1\n"})
    repo.commit("Fix bug in a", {"a.py": "a = 2\n"})
    tree = repo.git("rev-parse", f"{first}^{{tree}}").strip()
    clones = tmp_path / "cache" / "clones"  # where ListCommits(tmp_path / "cache") keeps them
    resolved = resolve(RepoSpec.parse(str(repo.path), tmp_path), cache_dir=clones)
    copy = resolved.spec.cache_path(clones)
    (repo.path / ".git" / "objects" / tree[:2] / tree[2:]).unlink()
    with pytest.raises(GitError, match="holes.*corrupt"):  # the copy made when pinning fails
        resolve(RepoSpec.parse(str(repo.path), tmp_path))
    for pack in (copy / "objects" / "pack").glob("*.pack"):  # the cache's copy loses it too
        data = pack.read_bytes()
        pack.unlink()
        pack.with_suffix(".idx").unlink()
        subprocess.run(["git", "-C", str(copy), "unpack-objects", "-q"], input=data, check=True)
    (copy / "objects" / tree[:2] / tree[2:]).unlink()
    task = repo_task(resolved, "commits", None, "fail")
    with pytest.raises(GitError, match="holes"):
        list(ListCommits(str(tmp_path / "cache")).rows_for(task))
    skipped = list(ListCommits(str(tmp_path / "cache")).rows_for({**task, "on_error": "skip"}))
    assert skipped[-1]["drop_reason"] == "repo_error"


def test_a_local_repository_is_copied_without_its_other_refs(make_repo, tmp_path):
    """A mirror of a hosted repository holds refs/pull/* refs, some naming objects it never got:
    the copy takes branches, tags and remote-tracking branches only, and still mines."""
    repo = make_repo("hosted")
    repo.commit("Add mean", {"stats.py": MEAN_BUGGY})
    head = repo.commit("Fix bug in mean", {"stats.py": MEAN_FIXED})
    repo.git("tag", "v1")
    dangling = repo.path / ".git" / "refs" / "pull" / "7" / "head"
    dangling.parent.mkdir(parents=True)
    dangling.write_text("1" * 40 + "\n")  # an object this repository does not have
    resolved = resolve(RepoSpec.parse(str(repo.path), tmp_path), "v1", cache_dir=tmp_path / "cache")
    assert resolved.sha == head
    copy = resolved.spec.cache_path(tmp_path / "cache")
    refs = subprocess.run(["git", "-C", str(copy), "for-each-ref", "--format=%(refname)"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert sorted(refs) == ["refs/heads/main", "refs/tags/v1"]
    rows = by_message(list_rows(repo.path, tmp_path))
    assert rows["Fix bug in mean"]["drop_reason"] is None


def test_clone_url_is_cloned_bare_without_running_hooks(make_repo, tmp_path):
    origin = make_repo("origin")
    origin.commit("Add file", {"a.py": "a = 1\n"})
    sha = origin.commit("Fix bug in a", {"a.py": "a = 2\n"})
    marker = tmp_path / "hook-ran"
    hook = origin.path / ".git" / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(origin.path), str(bare)], check=True)

    spec = RepoSpec.parse(f"file://{bare}", tmp_path)
    assert spec.kind == "url"
    resolved = resolve(spec)
    assert resolved.sha == sha
    local = materialize(resolved, tmp_path / "cache")
    assert local.parent == tmp_path / "cache"
    assert (local / "HEAD").is_file() and not (local / ".git").exists()  # bare: no work tree
    assert not marker.exists()
    assert materialize(resolved, tmp_path / "cache") == local  # cached: no second clone
    blob = origin.git("rev-parse", f"{sha}:a.py").strip()
    assert read_blobs(local, [blob], "origin") == {blob: b"a = 2\n"}


def test_bundle_source(make_repo, tmp_path):
    origin = make_repo("origin")
    origin.commit("Add file", {"a.py": "a = 1\n"})
    sha = origin.commit("Fix bug in a", {"a.py": "a = 2\n"})
    bundle = tmp_path / "origin.bundle"
    origin.git("bundle", "create", "-q", str(bundle), "--all")
    spec = RepoSpec.parse("origin.bundle", tmp_path)
    assert spec.kind == "bundle" and spec.name == "origin"  # its public name: the file stem
    resolved = resolve(spec)
    assert resolved.sha == sha
    rows = list(ListCommits(str(tmp_path / "cache")).rows_for(repo_task(resolved, "s", None, "fail")))
    assert [r["message"].strip() for r in rows] == ["Fix bug in a", "Add file"]


def test_url_credentials_never_reach_the_rows(tmp_path):
    spec = RepoSpec.parse("https://user:secret@example.com/org/repo.git", tmp_path)
    assert "secret" not in spec.name and spec.name == "https://example.com/org/repo.git"


def test_a_nul_byte_past_the_first_8000_bytes_is_binary(make_repo, tmp_path):
    # git's own heuristic looks at the first 8,000 bytes only; a pair must never carry a NUL.
    padding = "# " + "x" * 78 + "\n"
    clean = padding * 120  # 9,720 bytes of text
    late_nul = (clean[:9000] + "\x00" + clean[9001:]).encode()
    assert late_nul.index(b"\x00") == 9000
    repo = make_repo()
    repo.commit("Add module file", {"late.py": clean + MEAN_BUGGY})
    repo.commit("Fix bug: off-by-one in mean", {"late.py": late_nul + MEAN_FIXED.encode()})
    repo.commit("Fix bug: restore the mean", {"late.py": clean + MEAN_FIXED})
    rows = list_rows(repo.path, tmp_path)
    for step in (FilterMessages(), LabelCriteria(), ReadContents(max_bytes=1 << 20), AssemblePairs(),
                 ValidatePairs()):
        rows = step.run(rows)
    outcome = {row["message"].strip(): (row["drop_stage"], row["drop_reason"]) for row in rows}
    # the commit that adds the NUL and the one that removes it both hold it on one side
    assert outcome["Fix bug: off-by-one in mean"] == ("content", "binary")
    assert outcome["Fix bug: restore the mean"] == ("content", "binary")
    assert not any("\x00" in (row["chosen"] or "") + (row["rejected"] or "") for row in rows)
