"""What a build writes, prints and publishes carries no credential and no local path (issue 12,
items 3 and 4), on real builds from real repositories (one served over loopback HTTP)."""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from codeprefs.cli import app
from codeprefs.pipelines.manifest import load_manifest
from codeprefs.publish import publish
from codeprefs.core.redact import public_url, redact_text, redact_url
from tests.conftest import GitRepo
from tests.fakehub import hub  # noqa: F401  (a fixture)
from tests.remotes import export_row, write_jsonl
from tests.samples import STATS_V1, STATS_V2, STATS_V3

TOKENS = ["ghp_PasswordTokenA1", "ghp_UserTokenB2", "ghp_SkipTokenC3", "ghp_QueryTokenD4",
          "ghp_ExportTokenE5", "ghp_OriginTokenF6"]


def test_redact_rules():
    assert redact_url("https://u:ghp_x@host/o/r.git") == "https://***@host/o/r.git"
    assert public_url("https://ghp_x@host:8080/o/r.git") == "https://host:8080/o/r.git"
    assert public_url("https://host/o/r.git?access_token=ghp_x&ref=main") == "https://host/o/r.git?ref=main"
    assert public_url("ssh://git:pw@host/o/r.git") == "ssh://git@host/o/r.git"
    assert public_url("git@github.com:o/r.git") == "git@github.com:o/r.git"
    assert redact_text("fatal: unable to access 'http://a:b@h/x/?token=c': 404") == \
        "fatal: unable to access 'http://***@h/x/?token=***': 404"


def history(path: Path, tag: str = "") -> GitRepo:
    """Three commits; ``tag`` makes the code (so the pairs) of one history differ from another's."""
    repo = GitRepo(path)
    note = f"# {tag}\n" if tag else ""
    repo.commit("Add statistics helpers", {"stats.py": note + STATS_V1})
    repo.commit("Fix bug: mean was off by one", {"stats.py": note + STATS_V2})
    repo.commit("Speed up mean with the builtin sum", {"stats.py": note + STATS_V3})
    return repo


@pytest.fixture
def served(tmp_path):
    """Bare repositories under ``<root>/org/`` served by a dumb-HTTP server on loopback."""
    root = tmp_path / "served"
    work = history(tmp_path / "work")
    for name in ("repo", "other"):
        bare = root / "org" / f"{name}.git"
        subprocess.run(["git", "clone", "-q", "--bare", str(work.path), str(bare)], check=True)
        subprocess.run(["git", "-C", str(bare), "update-server-info"], check=True)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}", work.head()
    server.shutdown()
    server.server_close()


def every_file(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def shard_text(out: Path) -> str:
    return json.dumps([pq.read_table(p).to_pylist() for p in sorted(out.rglob("*.parquet"))
                       if ".cache" not in p.parts], default=str)


@pytest.mark.ray
def test_no_credential_in_outputs_logs_errors_or_upload(ray_local, served, tmp_path, hub, capfd):
    host, head = served
    a, b, c, d, e, _ = TOKENS
    export = write_jsonl(tmp_path / "export.jsonl", [
        export_row(head, "org/repo", "stats.py", "Speed up mean with the builtin sum")])
    manifest = tmp_path / "creds.yaml"
    manifest.write_text(yaml.safe_dump({"name": "creds", "sources": [
        {"type": "git", "repos": [f"http://alice:{a}@{host}/org/repo.git", f"http://{b}@{host}/org/other.git"]},
        {"type": "git", "on_error": "skip", "repos": [f"http://bob:{c}@{host}/org/missing.git?access_token={d}"]},
        {"type": "export", "path": "export.jsonl", "remote": f"http://carol:{e}@{host}/{{repo}}.git",
         "retries": 0, "fetch_timeout_s": 30},
    ], "ray": {"scratch_dir": str(tmp_path / "scratch")}}))  # clones and remotes: scanned below too
    out = tmp_path / "out"
    from codeprefs.pipelines.build import build

    lines: list[str] = []
    record = build(load_manifest(manifest), out, manifest_path=str(manifest), log=lines.append)
    assert record["rows"]["kept"] >= 2  # the two served repositories were mined
    assert {i["repo"] for i in record["inputs"] if i.get("type") == "git"} == {
        f"http://{host}/org/repo.git", f"http://{host}/org/other.git", f"http://{host}/org/missing.git"}
    assert [i["status"] for i in record["inputs"] if i.get("type") == "git"] == ["ok", "ok", "error"]

    failing = tmp_path / "fail.yaml"
    failing.write_text(yaml.safe_dump({"name": "fail", "sources": [
        {"type": "git", "repos": [f"http://bob:{c}@{host}/org/missing.git?access_token={d}"]}]}))
    cli = CliRunner().invoke(app, ["build", "-m", str(failing), "-o", str(tmp_path / "fail-out")])
    assert cli.exit_code == 2 and "org/missing.git" in cli.output

    uploaded = publish(out, "org/creds", log=lines.append)
    assert {f.path_in_repo for f in uploaded.files} >= {"README.md", "run.json"}
    captured = capfd.readouterr()
    scratch = every_file(tmp_path / "scratch")
    assert any(".git/" in name for name in scratch) and any(name.endswith("fetch.log") for name in scratch)
    texts = {**every_file(out), **every_file(tmp_path / "fail-out"), **scratch,
             **{f"name:{name}": name.encode() for name in scratch},
             **{f"hub:{k}": v for k, v in hub.repos["org/creds"].items()},
             "log": "\n".join(lines).encode(), "cli": cli.output.encode(),
             "stdout": captured.out.encode(), "stderr": captured.err.encode()}
    assert any(name.startswith("rejects/") for name in texts)
    leaks = {(name, token) for name, data in texts.items() for token in TOKENS[:5] if token.encode() in data}
    assert not leaks


@pytest.mark.ray
def test_no_local_path_in_shards_card_or_upload(ray_local, tmp_path, hub):
    repos = tmp_path / "home" / "someone" / "src"
    cloned = history(repos / "widgets", "widgets")  # a clone of a public repository: named by its origin
    cloned.git("remote", "add", "origin", f"https://me:{TOKENS[5]}@github.com/acme/widgets.git")
    plain = history(repos / "tools", "tools")  # no remote: its folder name
    bare = repos / "engine.git"
    engine = history(tmp_path / "engine-work", "engine")
    subprocess.run(["git", "clone", "-q", "--bare", "--no-local", str(engine.path), str(bare)], check=True)
    subprocess.run(["git", "-C", str(bare), "remote", "remove", "origin"], check=True)
    named = history(repos / "x" / "tools", "named")  # the same folder name as `tools`: given a name
    bundle = repos / "ledger.bundle"
    ledger = history(tmp_path / "ledger-work", "ledger")
    subprocess.run(["git", "-C", str(ledger.path), "bundle", "create", "-q", str(bundle), "--all"], check=True)
    manifest = tmp_path / "manifests" / "local.yaml"
    manifest.parent.mkdir()
    manifest.write_text(yaml.safe_dump({"name": "local", "sources": [{"type": "git", "license": "mit", "repos": [
        str(cloned.path), str(plain.path), f"file://{bare}", {"path": str(named.path), "name": "acme/tools"},
        str(bundle)]}], "pairs": {"scope": "file"}}))  # the tag comment keeps whole files apart
    from codeprefs.pipelines.build import build

    out = tmp_path / "out"
    record = build(load_manifest(manifest), out, manifest_path=str(manifest))
    rows = pq.read_table(out / "data").to_pylist()
    assert {row["repo"] for row in rows} == {"https://github.com/acme/widgets.git", "tools", "engine",
                                             "acme/tools", "ledger"}
    assert record["manifest"]["sources"][0]["repos"][:2] == ["../home/someone/src/widgets",
                                                            "../home/someone/src/tools"]
    assert record["manifest_path"] == "../manifests/local.yaml"  # relative to the output folder
    from codeprefs.pipelines.runrecord import list_runs

    assert list_runs(out)[0]["manifest_path"] == str(manifest)  # `codeprefs runs` still finds it
    ids = sorted(row["id"] for row in rows)
    assert len(set(ids)) == len(ids)

    plan = publish(out, "org/local", log=lambda line: None)
    published = {f"hub:{k}": v for k, v in hub.repos["org/local"].items()}
    assert set(published) >= {"hub:README.md", "hub:run.json"} and len(plan.files) == len(published)
    texts = {"shards": shard_text(out).encode(), "card": (out / "README.md").read_bytes(),
             "run.json": (out / "run.json").read_bytes(), **published}
    absolute = {str(tmp_path).encode(), str(tmp_path.resolve()).encode(), TOKENS[5].encode()}
    assert not {(name, a) for name, data in texts.items() for a in absolute if a in data}

    again = build(load_manifest(manifest), out, manifest_path=str(manifest))
    assert again.get("up_to_date") is True  # same names, same keys: nothing to redo


def test_two_repositories_with_one_name_are_refused(tmp_path):
    from codeprefs.pipelines.sources.base import SourceError
    from codeprefs.pipelines.sources.kinds.git import resolve_repositories

    def resolve_inputs(manifest):
        return resolve_repositories(list(enumerate(manifest.sources)), manifest.base_dir)

    first, second = history(tmp_path / "a" / "lib"), history(tmp_path / "b" / "lib")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"name": "m", "sources": [
        {"type": "git", "repos": [str(first.path), str(second.path)]}]}))
    with pytest.raises(SourceError, match="'lib'.*name"):
        resolve_inputs(load_manifest(manifest))
    manifest.write_text(yaml.safe_dump({"name": "m", "sources": [
        {"type": "git", "repos": [str(first.path), {"path": str(second.path), "name": "acme/lib"}]}]}))
    assert [repo.spec.name for _, _, repo, _ in resolve_inputs(load_manifest(manifest))] == ["lib", "acme/lib"]
