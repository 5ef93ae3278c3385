"""The embedded quickstart data (quickstart/): bundles, histories and what the pipeline makes of them.

Every history is rebuilt here with ``quickstart/build_repos.py`` into a temporary folder; the
rebuilt repositories must carry exactly the commits of the committed bundles, and driving the
pipeline's steps over them (without Ray, as ``pipelines/build.py`` wires them) must keep pairs
in every language and criterion and drop each kind of planted noise for its own reason.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections import Counter
from pathlib import Path, PurePosixPath

import pytest

from codeprefs.pipelines.manifest import load_manifest
from codeprefs.core.schema import Aspect, Language
from codeprefs.filters.messages import LOW_SIGNAL_MESSAGES, MessageFilter, normalise_message
from codeprefs.filters.validation import normalise_whitespace
from codeprefs.parsers.languages import language_for_path
from codeprefs.pipelines.sources.kinds.git import GitSource, resolve_repositories
from codeprefs.core.rows import Row
from codeprefs.pipelines.sources.gitrepo import RepoSpec, resolve
from codeprefs.pipelines.steps import (
    AssemblePairs,
    FilterMessages,
    LabelCriteria,
    ListCommits,
    ReadContents,
    ValidatePairs,
    repo_task,
)

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "manifests" / "quickstart.yaml"

MIN_PAIRS_PER_LANGUAGE = 5
MIN_PAIRS_PER_CRITERION = 5
MIN_CRITERIA_PER_LANGUAGE = 3  # "several"
MIN_LANGUAGES_PER_CRITERION = 3


def _import_build_repos():
    """quickstart/build_repos.py is a script, not a package module: import it by path."""
    spec = importlib.util.spec_from_file_location("quickstart_build_repos",
                                                  ROOT / "quickstart" / "build_repos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being created
    spec.loader.exec_module(module)
    return module


build_repos = _import_build_repos()


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, object]:
    """Every history, rebuilt into a fresh repository: name -> BuiltRepo."""
    root = tmp_path_factory.mktemp("quickstart-repos")
    folders = build_repos.history_folders()
    assert folders, "no quickstart histories found"
    return {folder.name: build_repos.build_repository(build_repos.load_history(folder), root / folder.name)
            for folder in folders}


def _pipeline_rows(repo, manifest, cache_dir: Path) -> list[Row]:
    """The rows the build would produce for one repository, stage by stage, without Ray."""
    filters = manifest.filters
    validation = filters.validation
    source = manifest.sources[0]
    pinned = resolve(RepoSpec.parse(str(repo.path), repo.path.parent))
    rows = list(ListCommits(str(cache_dir)).rows_for(
        repo_task(pinned, source.subset, source.max_commits, source.on_error)))
    for step in (
        FilterMessages(MessageFilter(filters.message)),
        LabelCriteria(filters.criteria),
        ReadContents(max_bytes=validation.max_bytes),
        AssemblePairs(),
        ValidatePairs(validation),
    ):
        rows = step.run(rows)
    return rows


@pytest.fixture(scope="module")
def outcomes(built, tmp_path_factory) -> dict[str, list[tuple[object, Row]]]:
    """name -> [(commit spec, pipeline row of the commit it produced)], in history order."""
    manifest = load_manifest(MANIFEST)
    cache_dir = tmp_path_factory.mktemp("cache")
    result = {}
    for name, repo in built.items():
        rows = _pipeline_rows(repo, manifest, cache_dir)
        by_sha = {row["commit"]: row for row in rows}
        assert len(by_sha) == len(rows) == len(repo.shas), f"{name}: one row per commit expected"
        result[name] = [(spec, by_sha[sha]) for spec, sha in zip(repo.history.commits, repo.shas,
                                                                  strict=True)]
    return result


def _fate(row: Row) -> str:
    """``stage/reason`` for a dropped row, the primary criterion for a kept one."""
    return f"{row['drop_stage']}/{row['drop_reason']}" if row["drop_reason"] else row["aspect"]


def _kept(outcomes) -> list[tuple[str, Row]]:
    return [(name, row) for name, pairs in outcomes.items() for _, row in pairs
            if row["drop_reason"] is None]


# -- (a) the committed bundles are exactly what the histories build ------------------------------


def test_every_history_has_a_current_bundle_and_no_bundle_lacks_a_history(built):
    bundles = {path.stem for path in build_repos.BUNDLES_DIR.glob("*.bundle")}
    assert bundles == set(built)
    for name, repo in built.items():
        bundle = build_repos.bundle_path(name)
        assert build_repos.bundle_heads(bundle) == {"HEAD": repo.head, "refs/heads/main": repo.head}, (
            f"{bundle} is stale: run python quickstart/build_repos.py")


def test_rebuilt_history_matches_the_bundle_commit_for_commit(built, tmp_path):
    for name, repo in built.items():
        clone = tmp_path / f"{name}.git"
        subprocess.run(["git", "clone", "--bare", "--quiet", str(build_repos.bundle_path(name)),
                        str(clone)], check=True, capture_output=True)
        head_ref = subprocess.run(["git", "-C", str(clone), "symbolic-ref", "HEAD"], check=True,
                                  capture_output=True, text=True).stdout.strip()
        assert head_ref == "refs/heads/main"
        listed = subprocess.run(["git", "-C", str(clone), "rev-list", "--all"], check=True,
                                capture_output=True, text=True).stdout.split()
        assert sorted(listed) == sorted(repo.shas), name


def test_build_ignores_the_callers_git_configuration_and_environment(built, tmp_path, monkeypatch):
    # Each of these would change the commit objects if git honoured it.
    hostile = ("[init]\n\tdefaultBranch = trunk\n\tdefaultObjectFormat = sha256\n"
               "[i18n]\n\tcommitEncoding = ISO-8859-1\n"
               "[user]\n\tname = Someone Else\n\temail = else@example.com\n")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(hostile, encoding="utf-8")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Someone Else")
    monkeypatch.setenv("GIT_COMMITTER_DATE", "2001-01-01T00:00:00Z")
    monkeypatch.setenv("GIT_DEFAULT_HASH", "sha256")
    monkeypatch.setenv("TZ", "America/New_York")
    name = "cpp-matrix"  # has a side branch and a merge
    again = build_repos.build_repository(built[name].history, tmp_path / name)
    assert again.shas == built[name].shas


# -- (b) what the pipeline makes of the histories -----------------------------------------------


def test_every_commit_gets_the_fate_its_history_declares(outcomes):
    wrong = [f"{name} commit {spec.number} ({spec.message.splitlines()[0]!r}): "
             f"declared {spec.keep or spec.drop}, got {_fate(row)}"
             for name, pairs in outcomes.items() for spec, row in pairs
             if _fate(row) != (spec.keep or spec.drop)]
    assert not wrong, "\n".join(wrong)


def test_kept_pairs_cover_every_language_and_criterion(outcomes, built):
    kept = _kept(outcomes)
    by_language = Counter(row["language"] for _, row in kept)
    by_criterion = Counter(row["aspect"] for _, row in kept)
    assert set(by_language) == {language.value for language in Language}
    assert set(by_criterion) == {aspect.value for aspect in Aspect}
    assert min(by_language.values()) >= MIN_PAIRS_PER_LANGUAGE, by_language
    assert min(by_criterion.values()) >= MIN_PAIRS_PER_CRITERION, by_criterion

    criteria_of = {language: {row["aspect"] for _, row in kept if row["language"] == language}
                   for language in by_language}
    languages_of = {aspect: {row["language"] for _, row in kept if row["aspect"] == aspect}
                    for aspect in by_criterion}
    assert min(len(found) for found in criteria_of.values()) >= MIN_CRITERIA_PER_LANGUAGE, criteria_of
    assert min(len(found) for found in languages_of.values()) >= MIN_LANGUAGES_PER_CRITERION

    for name, row in kept:  # each history is one project in one language, headers included
        assert row["language"] == built[name].history.language, (name, row["path"])
        assert row["chosen"] != row["rejected"] and row["input"] and row["chosen_nodes"] > 0


def test_headers_are_labelled_c_or_cpp_from_their_repository(outcomes):
    header_languages = {(name, row["language"]) for name, row in _kept(outcomes)
                        if row["path"].endswith(".h")}
    assert ("c-ringbuf", "C") in header_languages
    assert ("cpp-matrix", "C++") in header_languages
    assert {language for _, language in header_languages} == {"C", "C++"}


def _noise_kinds(history) -> list[tuple[str, object]]:
    """Classify each commit of ``history`` by its shape alone (not by its declared fate)."""
    kinds = []
    seen_paths: set[str] = set()
    latest: dict[str, str] = {}  # path -> the snapshot it last received
    message_filter = MessageFilter()
    for spec in history.commits:
        paths = [*spec.write, *spec.delete, *(spec.rename or {})]
        if spec.number == 1:
            kinds.append(("root commit", spec))
        elif spec.merge is not None:
            kinds.append(("merge commit", spec))
        elif len(paths) > 1:
            kinds.append(("several files", spec))
        elif spec.rename:
            kinds.append(("rename", spec))
        elif spec.delete:
            kinds.append(("deletion", spec))
        elif paths[0] not in seen_paths:
            kinds.append(("new file", spec))
        elif language_for_path(paths[0]) is None:
            kind = "docs change" if PurePosixPath(paths[0]).suffix == ".md" else "non-target file"
            kinds.append((kind, spec))
        elif len(spec.message.strip()) <= message_filter.settings.min_length:
            kinds.append(("too-short message", spec))
        elif normalise_message(spec.message) in LOW_SIGNAL_MESSAGES:
            kinds.append(("low-signal message", spec))
        else:
            before = history.snapshot(latest[paths[0]]).read_text(encoding="utf-8")
            after = history.snapshot(spec.write[paths[0]]).read_text(encoding="utf-8")
            if normalise_whitespace(before) == normalise_whitespace(after):
                kinds.append(("whitespace-only change", spec))
        for old_path, new_path in (spec.rename or {}).items():
            latest[new_path] = latest.pop(old_path)
        seen_paths.update(spec.write)
        seen_paths.update((spec.rename or {}).values())
        latest.update(spec.write)
    return kinds


READABILITY = Aspect.READABILITY_MAINTAINABILITY.value
NOISE_DROPS = {
    "root commit": "list/root_commit",
    "merge commit": "list/merge_commit",
    "several files": "list/multiple_files",
    "rename": "list/not_modified_in_place",
    "deletion": "list/not_modified_in_place",
    "new file": "list/not_modified_in_place",
    "docs change": "list/not_target_language",
    "non-target file": "list/not_target_language",
    "too-short message": "message/message_too_short",
    "low-signal message": "message/message_low_signal",
    "whitespace-only change": "validate/unchanged_after_whitespace",
}


def test_each_kind_of_noise_is_present_and_dropped_for_its_reason(outcomes, built):
    found: Counter[str] = Counter()
    wrong = []
    for name, repo in built.items():
        rows = {spec.number: row for spec, row in outcomes[name]}
        for kind, spec in _noise_kinds(repo.history):
            found[kind] += 1
            expected = NOISE_DROPS[kind]
            if kind == "whitespace-only change" and READABILITY in (rows[spec.number]["aspects"] or []):
                expected = READABILITY  # the one criterion a layout change can teach (issue #13)
            if _fate(rows[spec.number]) != expected:
                wrong.append(f"{name} commit {spec.number}: {kind} got {_fate(rows[spec.number])}")
    assert not wrong, "\n".join(wrong)
    assert set(found) == set(NOISE_DROPS), f"missing noise kinds: {set(NOISE_DROPS) - set(found)}"


def test_messages_naming_no_criterion_are_dropped_at_labelling(outcomes):
    unlabelled = [(name, spec, row) for name, pairs in outcomes.items() for spec, row in pairs
                  if row["drop_stage"] == "criteria"]
    assert len({name for name, _, _ in unlabelled}) >= 2  # several projects plant one
    for name, spec, row in unlabelled:
        assert row["drop_reason"] == "no_criterion", (name, spec.message)
        assert row["aspect"] is None and row["chosen"] is None


def test_the_manifest_mines_every_bundle_at_its_head(built):
    manifest = load_manifest(MANIFEST)
    pinned = resolve_repositories([(index, source) for index, source in enumerate(manifest.sources)
                                   if isinstance(source, GitSource)], manifest.base_dir)
    assert len(pinned) == len(built)
    for _, _, repo, error in pinned:
        assert error is None and repo is not None and repo.spec.kind == "bundle"
        name = Path(repo.spec.location).stem
        assert repo.sha == built[name].head


# -- build_repos.py on bad histories ------------------------------------------------------------


def _history_folder(tmp_path: Path, toml: str, snapshots: dict[str, str]) -> Path:
    folder = tmp_path / "demo"
    (folder / "files").mkdir(parents=True)
    (folder / "history.toml").write_text(toml, encoding="utf-8")
    for name, text in snapshots.items():
        (folder / "files" / name).write_text(text, encoding="utf-8")
    return folder


def test_a_missing_snapshot_is_named(tmp_path):
    folder = _history_folder(tmp_path, 'language = "C"\n[[commit]]\nmessage = "Initial commit"\n'
                             'write = { "a.c" = "a.c@1" }\ndrop = "list/root_commit"\n', {})
    with pytest.raises(build_repos.HistoryError, match=r"commit 1: no snapshot files/a\.c@1"):
        build_repos.load_history(folder)


def test_unknown_keys_and_missing_fates_are_rejected(tmp_path):
    base = 'language = "C"\n[[commit]]\nmessage = "Initial commit"\nwrite = { "a.c" = "a.c@1" }\n'
    folder = _history_folder(tmp_path, base + 'keep = "Readability_Maintainability"\nauthor = "x"\n',
                             {"a.c@1": "int x;\n"})
    with pytest.raises(build_repos.HistoryError, match=r"commit 1: unknown key\(s\) \['author'\]"):
        build_repos.load_history(folder)
    (folder / "history.toml").write_text(base, encoding="utf-8")
    with pytest.raises(build_repos.HistoryError, match="exactly one of 'keep'"):
        build_repos.load_history(folder)


def test_a_side_branch_that_is_never_merged_is_an_error(tmp_path):
    folder = _history_folder(
        tmp_path,
        'language = "C"\n'
        '[[commit]]\nmessage = "Initial commit"\nwrite = { "a.c" = "a.c@1" }\ndrop = "list/root_commit"\n'
        '[[commit]]\nmessage = "Fix logic error"\nbranch = "fix"\nwrite = { "a.c" = "a.c@2" }\n'
        'keep = "Functional_Correctness"\n',
        {"a.c@1": "int x;\n", "a.c@2": "int y;\n"})
    with pytest.raises(build_repos.HistoryError, match=r"never merged: \['fix'\]"):
        build_repos.build_repository(build_repos.load_history(folder), tmp_path / "repo")


def test_check_mode_reports_a_stale_bundle(tmp_path, capsys):
    folder = _history_folder(
        tmp_path, 'language = "C"\n[[commit]]\nmessage = "Initial commit"\n'
        'write = { "a.c" = "a.c@1" }\ndrop = "list/root_commit"\n', {"a.c@1": "int x;\n"})
    bundles = tmp_path / "bundles"
    args = ["--histories", str(folder.parent), "--bundles", str(bundles)]
    assert build_repos.main([*args, "--check"]) == 1  # no bundle yet
    assert build_repos.main(args) == 0
    assert build_repos.main([*args, "--check"]) == 0
    (folder / "files" / "a.c@1").write_text("int changed;\n", encoding="utf-8")
    assert build_repos.main([*args, "--check"]) == 1
    assert "stale" in capsys.readouterr().err
