"""A manifest's own term lists (``filters.criteria.terms_dir``): found from the manifest's folder,
wherever the build runs, and part of the source stage's fingerprint, so edited lists rerun it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from codeprefs.core.schema import Aspect
from codeprefs.pipelines.manifest import ManifestError, load_manifest
from codeprefs.pipelines.recipes import settings_data
from codeprefs.pipelines.sources.commits import CommitSteps
from codeprefs.pipelines.steps import LabelCriteria

SHIPPED = Path(__file__).resolve().parents[1] / "filters" / "terms"


def own_terms(folder: Path) -> Path:
    """A copy of the shipped lists in which 'frobnicate' is a readability term."""
    shutil.copytree(SHIPPED, folder)
    with (folder / "readability.list").open("a") as lists:
        lists.write("frobnicate\n")
    return folder


def manifest_with_terms(folder: Path, terms: str) -> Path:
    (folder / "repo").mkdir(parents=True, exist_ok=True)
    manifest = folder / "run.yaml"
    manifest.write_text(f"name: t\nsources:\n  - type: git\n    repos: [repo]\n"
                        f"filters:\n  criteria:\n    terms_dir: {terms}\n")
    return manifest


def labelled(steps: CommitSteps, message: str) -> str | None:
    row = {"message": message, "path": "src/app.py", "drop_reason": None, "drop_stage": None,
           "drop_detail": None, "aspect": None}
    LabelCriteria(steps.labelling()).run([row])
    return row["aspect"]


def test_terms_dir_is_read_from_the_manifests_folder_wherever_the_build_runs(tmp_path, monkeypatch):
    own_terms(tmp_path / "project" / "terms")
    manifest = load_manifest(manifest_with_terms(tmp_path / "project", "terms"))
    monkeypatch.chdir(tmp_path)  # not the manifest's folder
    steps = CommitSteps.from_manifest(manifest)
    assert steps.terms_root == str((tmp_path / "project" / "terms").resolve())
    assert labelled(steps, "Frobnicate the parser") == Aspect.READABILITY_MAINTAINABILITY.value
    assert labelled(CommitSteps.from_manifest(load_manifest(manifest_with_terms(tmp_path / "other", str(SHIPPED)))),
                    "Frobnicate the parser") is None


def test_edited_term_lists_change_the_fingerprint_and_paths_do_not(tmp_path):
    own_terms(tmp_path / "a" / "terms")
    first = load_manifest(manifest_with_terms(tmp_path / "a", "terms"))
    before = settings_data(CommitSteps.from_manifest(first))
    own_terms(tmp_path / "b" / "terms")
    moved = settings_data(CommitSteps.from_manifest(load_manifest(manifest_with_terms(tmp_path / "b", "terms"))))
    assert moved == before  # the same lists elsewhere: the same stage
    with (tmp_path / "a" / "terms" / "sec.list").open("a") as lists:
        lists.write("sanitise input\n")
    assert settings_data(CommitSteps.from_manifest(first)) != before


def test_a_missing_terms_dir_is_a_manifest_error(tmp_path):
    with pytest.raises(ManifestError, match=r"filters.criteria.terms_dir: no such folder: .*nowhere"):
        load_manifest(manifest_with_terms(tmp_path, "nowhere"))
