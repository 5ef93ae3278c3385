"""Source kinds: one registry, one protocol, and recipes whose fingerprints miss no setting."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import get_args

import pytest

from codeprefs.pipelines.manifest import parse_manifest
from codeprefs.pipelines.recipes import not_fingerprinted, settings_data
from codeprefs.pipelines.sources.base import SourceSettings
from codeprefs.pipelines.sources.kinds import SOURCE_KINDS, Source, kind_of
from codeprefs.pipelines.sources.kinds.git import GitRecipe
from codeprefs.pipelines.sources.commits import CommitSteps

ROOT = Path(__file__).resolve().parents[1]


def test_the_manifest_union_is_the_registry():
    union, _ = get_args(Source)
    assert set(get_args(union)) == {kind.settings for kind in SOURCE_KINDS}
    for kind in SOURCE_KINDS:
        assert issubclass(kind.settings, SourceSettings)
        assert get_args(kind.settings.model_fields["type"].annotation) == (kind.type,)
    assert [kind.type for kind in SOURCE_KINDS] == ["git", "solutions", "export", "dataset"]


def test_a_parsed_source_finds_its_kind(tmp_path):
    (tmp_path / "pairs.jsonl").write_text("")
    manifest = parse_manifest({"name": "m", "sources": [
        {"type": "git", "repos": ["https://example.com/a.git"]},
        {"type": "dataset", "path": "pairs.jsonl", "language": "Go", "aspect": "Readability"}]}, tmp_path)
    assert [kind_of(source).type for source in manifest.sources] == ["git", "dataset"]
    with pytest.raises(TypeError, match="not the settings of a registered source kind"):
        kind_of(object())


def _runtime_names(path: Path) -> set[str]:
    """Names a module imports or uses at run time: not in annotations, not under TYPE_CHECKING."""
    skipped: set[int] = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            skipped.update(id(inner) for inner in ast.walk(node))
        annotations = [getattr(node, "annotation", None), getattr(node, "returns", None)]
        for annotation in filter(None, annotations):
            skipped.update(id(inner) for inner in ast.walk(annotation))
    names = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.ImportFrom):
            names.update(alias.name for alias in node.names)
    return names


def test_no_module_outside_the_kinds_names_a_kind():
    """Adding a kind touches its module and the registry: the runner and the manifest name none."""
    kind_names = {kind.settings.__name__ for kind in SOURCE_KINDS} | {type(kind).__name__ for kind in SOURCE_KINDS}
    kinds_dir = ROOT / "pipelines" / "sources" / "kinds"
    offenders = {}
    for package in ("codeprefs", "pipelines", "filters", "parsers", "trainers"):
        for path in (ROOT / package).rglob("*.py"):
            if kinds_dir in path.parents:
                continue
            used = _runtime_names(path) & kind_names
            if used:
                offenders[str(path.relative_to(ROOT))] = sorted(used)
    assert offenders == {}


def _recipe(**changes) -> GitRecipe:
    manifest = parse_manifest({"name": "m", "sources": [{"type": "git", "repos": ["https://example.com/a.git"]}]},
                              Path("/tmp"))
    recipe = GitRecipe({"rev": "HEAD"}, CommitSteps.from_manifest(manifest), "/cache/a", 1024)
    return dataclasses.replace(recipe, **changes)


def test_every_recipe_field_is_in_the_fingerprint_unless_declared_not_to_be():
    base = settings_data(_recipe())
    assert set(base) == {"source", "commits"}  # scratch_dir and batch_rows are declared not to matter
    assert settings_data(_recipe(scratch_dir="/elsewhere", batch_rows=7)) == base
    assert settings_data(_recipe(source={"rev": "v2"})) != base
    commits = _recipe().commits
    narrower = dataclasses.replace(commits, scope=dataclasses.replace(commits.scope, window_lines=3))
    assert settings_data(_recipe(commits=narrower))["commits"]["scope"]["window_lines"] == 3
    assert base["commits"]["criteria"]["match"] == "word"  # pydantic sections come as their JSON


def test_settings_data_refuses_what_it_cannot_read():
    @dataclasses.dataclass(frozen=True)
    class Opaque:
        handle: object

    with pytest.raises(TypeError, match="object is not settings data"):
        settings_data(Opaque(object()))
    with pytest.raises(ValueError, match="say why"):
        not_fingerprinted("  ")


def test_the_validate_stage_is_fingerprinted_from_its_recipe(tmp_path):
    from codeprefs.pipelines.stages import validate_recipe

    def recipe(**filters):
        return validate_recipe(parse_manifest({"name": "m", "sources": [{"type": "git", "repos": ["https://e.com/a.git"]}],
                                               "filters": filters}, tmp_path))

    base = settings_data(recipe())
    assert set(base) == {"validation", "comment_only", "length", "tokenizer_files"}
    assert base["length"]["max_bytes"] == 4096 * 3 and base["tokenizer_files"] is None
    assert settings_data(recipe(validation={"min_depth": 4}))["validation"]["min_depth"] == 4
    assert settings_data(recipe(criteria={"comment_only": "drop"}))["comment_only"] == "drop"
    assert settings_data(recipe(length=None))["length"] is None and recipe(length=None).budget is None
