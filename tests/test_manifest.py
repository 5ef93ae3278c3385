"""Manifest validation: the minimal form works, and every mistake names its key or path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from codeprefs.pipelines.manifest import ManifestError, load_manifest

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_minimal_manifest_gets_every_default(tmp_path):
    manifest = load_manifest(write(tmp_path, """
name: my-run
sources:
  - type: git
    repos: [/abs/path/repo-a, file:///abs/path/repo-b.git]
"""))
    assert manifest.name == "my-run"
    assert manifest.sources[0].repos == ["/abs/path/repo-a", "file:///abs/path/repo-b.git"]
    assert manifest.sources[0].rev == "HEAD"
    assert manifest.filters.validation.max_error_fraction == 0.10
    assert manifest.filters.message.min_length == 10
    assert manifest.dedupe.exact is True
    assert manifest.output.max_shard_bytes == 500_000_000
    assert manifest.ray.unit_resources == {}
    resolved = manifest.resolved()
    assert resolved["filters"]["validation"]["min_depth"] == 3


def test_relative_globs_expand_against_the_manifest_folder_and_stay_relative(tmp_path):
    (tmp_path / "repos").mkdir()
    for name in ("b.bundle", "a.bundle"):
        (tmp_path / "repos" / name).write_bytes(b"")
    manifest = load_manifest(write(tmp_path, "name: r\nsources:\n  - type: git\n    repos: [repos/*.bundle]\n"))
    assert manifest.sources[0].repos == ["repos/a.bundle", "repos/b.bundle"]
    assert manifest.base_dir == tmp_path.resolve()


def test_a_repository_entry_may_give_its_public_name(tmp_path):
    manifest = load_manifest(write(tmp_path, """
name: r
sources:
  - type: git
    repos: [plain/repo, {path: /abs/x.git, name: org/x}, {url: "https://h/y.git", name: org/y}]
"""))
    repos = manifest.sources[0].repos
    assert [repo.location for repo in repos[1:]] == ["/abs/x.git", "https://h/y.git"]
    assert [repo.name for repo in repos[1:]] == ["org/x", "org/y"]  # a named entry is never a glob
    assert repos[0] == "plain/repo"
    for bad in ("{path: /x, name: /home/me/x}", "{path: /x, name: 'https://u:t@h/x'}", "{name: org/x}",
                "{path: /x, url: 'https://h/x'}", "{path: /x, nick: x}"):
        with pytest.raises(ManifestError, match=r"sources\.0\.git\.repos\.0"):
            load_manifest(write(tmp_path, f"name: r\nsources:\n  - type: git\n    repos: [{bad}]\n"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: r\nsources:\n  - type: git\n    repo: [/x]\n", "sources.0.git.repo: unknown key"),
        ("name: r\nsources:\n  - type: git\n    repos: [/x]\n    max_commits: many\n",
         "sources.0.git.max_commits"),
        ("name: r\nsources:\n  - type: svn\n    repos: [/x]\n", "sources.0"),
        ("name: r\n", "sources: Field required"),
        ("name: r\nsources: []\n", "sources"),
        ("name: r\nsources:\n  - type: git\n    repos: [/x]\nfilters:\n  validation:\n    max_error_fraction: 2\n",
         "filters.validation.max_error_fraction"),
        ("name: r\nsources:\n  - type: git\n    repos: [/x]\nbogus: 1\n", "bogus: unknown key"),
        ("- just\n- a list\n", "expected a mapping"),
        ("name: [unclosed\n", "not valid YAML"),
        ("name: r\nsources:\n  - type: git\n    repos: [nothing/*.bundle]\n", "matches nothing"),
        ("name: r\nsources:\n  - type: git\n    repos: [/x]\nray:\n  unit_resources: {CPU: 2}\n",
         "ray.unit_resources: Value error, 'CPU': name a custom resource"),
        ("name: r\nsources:\n  - type: git\n    repos: [/x]\nray:\n  unit_resources: {miner: 0}\n",
         "miner: the amount must be positive, got 0"),
    ],
)
def test_invalid_manifests_name_the_problem(tmp_path, text, expected):
    with pytest.raises(ManifestError) as caught:
        load_manifest(write(tmp_path, text))
    assert expected in str(caught.value)
    assert "run.yaml" in str(caught.value)


def test_missing_manifest_file(tmp_path):
    with pytest.raises(ManifestError, match="cannot read manifest .*absent.yaml"):
        load_manifest(tmp_path / "absent.yaml")


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "pipelines" / "build_prefs.py"), *args],
                          capture_output=True, text=True, cwd=cwd, timeout=120)


def test_cli_exits_non_zero_naming_the_bad_key(tmp_path):
    result = run_cli("--manifest", str(write(tmp_path, "name: r\nsources:\n  - type: git\n    repo: [/x]\n")))
    assert result.returncode == 2
    assert "sources.0.git.repo: unknown key" in result.stderr


def test_cli_exits_non_zero_naming_a_missing_repository(tmp_path):
    missing = tmp_path / "no-such-repo"
    manifest = write(tmp_path, f"name: r\nsources:\n  - type: git\n    repos: [{missing}]\n")
    result = run_cli("--manifest", str(manifest), "--output", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "sources.0.repos" in result.stderr and "no-such-repo" in result.stderr
    assert not (tmp_path / "out" / "data").exists()
