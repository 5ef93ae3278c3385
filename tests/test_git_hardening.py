"""A mined repository never makes git start a program: not through its own config, nor through
the user's global or the system's config, nor through the invoking environment.

Every program-spawning key found in git's documentation is planted, each pointing at a script
that leaves a marker file; repositories carry commits with OpenPGP, X.509 and SSH signatures (so
that ``log.showSignature`` would verify them). A real build (``pipelines/build_prefs.py`` in a
process of its own, so that its Ray workers inherit the hostile environment too) mines every kind
of input: a work tree, a bare repository, a ``file://`` URL, a bundle and an export source.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import GitRepo
from tests.processes import kill_processes_naming
from tests.remotes import export_row, write_jsonl

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.ray

HOOKS = (
    "applypatch-msg", "pre-applypatch", "post-applypatch", "pre-commit", "pre-merge-commit",
    "prepare-commit-msg", "commit-msg", "post-commit", "pre-rebase", "post-checkout", "post-merge",
    "pre-push", "pre-receive", "update", "proc-receive", "post-receive", "post-update",
    "reference-transaction", "push-to-checkout", "pre-auto-gc", "post-rewrite",
    "sendemail-validate", "fsmonitor-watchman", "post-index-change", "p4-pre-submit",
)

SIGNATURES = {  # the armour git recognises for each signature format
    "openpgp": ("-----BEGIN PGP SIGNATURE-----", "-----END PGP SIGNATURE-----"),
    "x509": ("-----BEGIN SIGNED MESSAGE-----", "-----END SIGNED MESSAGE-----"),
    "ssh": ("-----BEGIN SSH SIGNATURE-----", "-----END SSH SIGNATURE-----"),
}


class Trap:
    """Marker scripts: ``trap.script(name)`` runs ``touch <markers>/<name>``."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.markers = root / "markers"
        self.bin.mkdir(parents=True)
        self.markers.mkdir()

    def script(self, name: str) -> str:
        path = self.bin / name
        path.write_text(f"#!/bin/sh\ntouch '{self.markers / name}'\nexit 1\n")
        path.chmod(0o755)
        return str(path)

    def fired(self) -> list[str]:
        return sorted(p.name for p in self.markers.iterdir())

    def hooks(self, folder: Path, scope: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for hook in HOOKS:
            shutil.copy(self.script(f"{scope}-hook-{hook}"), folder / hook)
        return folder


def plant_config(config: Path, trap: Trap, scope: str, *, include: bool = True) -> None:
    """Write every program-spawning key into the git config file ``config``."""
    signers = config.parent / f"{scope}-allowed-signers"
    signers.write_text("someone@example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n")
    keys = {
        "log.showSignature": "true",
        "gpg.program": trap.script(f"{scope}-gpg.program"),
        "gpg.openpgp.program": trap.script(f"{scope}-gpg.openpgp.program"),
        "gpg.x509.program": trap.script(f"{scope}-gpg.x509.program"),
        "gpg.ssh.program": trap.script(f"{scope}-gpg.ssh.program"),
        "gpg.ssh.allowedSignersFile": str(signers),
        "gpg.ssh.defaultKeyCommand": trap.script(f"{scope}-gpg.ssh.defaultKeyCommand"),
        "core.fsmonitor": trap.script(f"{scope}-core.fsmonitor"),
        "core.sshCommand": trap.script(f"{scope}-core.sshCommand"),
        "core.gitProxy": trap.script(f"{scope}-core.gitProxy"),
        "core.pager": trap.script(f"{scope}-core.pager"),
        "core.editor": trap.script(f"{scope}-core.editor"),
        "core.askPass": trap.script(f"{scope}-core.askPass"),
        "core.alternateRefsCommand": trap.script(f"{scope}-core.alternateRefsCommand"),
        "core.hooksPath": str(trap.hooks(config.parent / f"{scope}-hooks", scope)),
        "sequence.editor": trap.script(f"{scope}-sequence.editor"),
        "pager.log": trap.script(f"{scope}-pager.log"),
        "diff.external": trap.script(f"{scope}-diff.external"),
        "diff.evil.textconv": trap.script(f"{scope}-diff.evil.textconv"),
        "diff.evil.command": trap.script(f"{scope}-diff.evil.command"),
        "filter.evil.clean": trap.script(f"{scope}-filter.evil.clean"),
        "filter.evil.smudge": trap.script(f"{scope}-filter.evil.smudge"),
        "filter.evil.process": trap.script(f"{scope}-filter.evil.process"),
        "filter.evil.required": "true",
        "merge.evil.driver": trap.script(f"{scope}-merge.evil.driver"),
        "credential.helper": "!" + trap.script(f"{scope}-credential.helper"),
        "uploadpack.packObjectsHook": trap.script(f"{scope}-uploadpack.packObjectsHook"),
        "protocol.allow": "always",
        "protocol.ext.allow": "always",
        "remote.origin.url": "ext::" + trap.script(f"{scope}-remote.origin.url-ext"),
        "remote.origin.uploadpack": trap.script(f"{scope}-remote.origin.uploadpack"),
        "remote.origin.receivepack": trap.script(f"{scope}-remote.origin.receivepack"),
        f"url.ext::{trap.script(f'{scope}-url.insteadOf-ext')} .insteadOf": "file://",
        "trailer.evil.cmd": trap.script(f"{scope}-trailer.evil.cmd"),
        "safe.directory": "*",
    }
    if include:
        included = config.parent / f"{scope}-included.gitconfig"
        plant_config(included, trap, f"{scope}-include", include=False)
        keys["include.path"] = str(included)
        keys["includeIf.gitdir:/.path"] = str(included)
    for key, value in keys.items():
        subprocess.run(["git", "config", "--file", str(config), "--add", key, value], check=True,
                       env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"})


def sign_head(repo: GitRepo, kind: str) -> str:
    """Rewrite HEAD's commit with a (fake) signature of ``kind``; return the new sha."""
    raw = repo.git("cat-file", "commit", "HEAD")
    header, _, message = raw.partition("\n\n")
    begin, end = SIGNATURES[kind]
    signature = "\n ".join([begin, "", "AAAAfakesignatureAAAA", end])
    signed = f"{header}\ngpgsig {signature}\n\n{message}"
    sha = repo.git("hash-object", "-t", "commit", "-w", "--stdin", input=signed.encode()).strip()
    repo.git("update-ref", "refs/heads/main", sha)
    return sha


def module(tag: str, version: int) -> str:
    return (f"def compute_{tag}(values):\n    total = 0\n    for value in values:\n"
            f"        if value > {version}:\n            total += value * {version + 1}\n    return total\n")


def hostile_history(repo: GitRepo, tag: str) -> dict[str, str]:
    """Four single-file fixes of ``mod_<tag>.py``, three of them signed; message -> sha."""
    path = f"mod_{tag}.py"
    repo.commit("Add module", {path: module(tag, 0),
                               ".gitattributes": "* diff=evil filter=evil merge=evil\n"})
    shas = {}
    for version, kind in enumerate(("openpgp", "x509", "ssh", None), start=1):
        message = f"Fix bug {version} in compute_{tag}: wrong threshold"
        shas[message] = repo.commit(message, {path: module(tag, version)})
        if kind:
            shas[message] = sign_head(repo, kind)
    return shas


def plant_repository(git_dir: Path, trap: Trap, scope: str) -> None:
    """Plant config, hooks and an alternate into the repository whose git directory is ``git_dir``."""
    trap.hooks(git_dir / "hooks", f"{scope}-own")
    alternate = git_dir.parent / f"{scope}-alternate.git"
    subprocess.run(["git", "init", "-q", "--bare", str(alternate)], check=True)
    (git_dir / "objects" / "info").mkdir(parents=True, exist_ok=True)
    (git_dir / "objects" / "info" / "alternates").write_text(f"{alternate / 'objects'}\n")
    (git_dir / "info").mkdir(exist_ok=True)
    (git_dir / "info" / "attributes").write_text("* diff=evil filter=evil merge=evil\n")
    plant_config(git_dir / "config", trap, scope)


def hostile_environment(base: Path, trap: Trap) -> dict[str, str]:
    """The build's environment: planted global (three places), system and environment config."""
    home, xdg = base / "home", base / "xdg"
    (xdg / "git").mkdir(parents=True)
    home.mkdir()
    plant_config(home / ".gitconfig", trap, "home")
    plant_config(xdg / "git" / "config", trap, "xdg")
    plant_config(base / "global.gitconfig", trap, "global")
    plant_config(base / "system.gitconfig", trap, "system")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") and k != "RAY_ADDRESS"}
    env.update({
        "HOME": str(home), "XDG_CONFIG_HOME": str(xdg),
        "GIT_CONFIG_GLOBAL": str(base / "global.gitconfig"),
        "GIT_CONFIG_SYSTEM": str(base / "system.gitconfig"),
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": "gpg.program", "GIT_CONFIG_VALUE_0": trap.script("env-GIT_CONFIG-gpg"),
        "GIT_CONFIG_KEY_1": "log.showSignature", "GIT_CONFIG_VALUE_1": "true",
        "GIT_EXTERNAL_DIFF": trap.script("env-GIT_EXTERNAL_DIFF"),
        "GIT_PAGER": trap.script("env-GIT_PAGER"), "PAGER": trap.script("env-PAGER"),
        "GIT_EDITOR": trap.script("env-GIT_EDITOR"), "EDITOR": trap.script("env-EDITOR"),
        "GIT_SSH_COMMAND": trap.script("env-GIT_SSH_COMMAND"), "GIT_SSH": trap.script("env-GIT_SSH"),
        "GIT_ASKPASS": trap.script("env-GIT_ASKPASS"),
        "RAY_AUTH_MODE": "disabled",
    })
    return env


def test_no_configured_program_runs_while_mining(tmp_path, make_repo):
    trap = Trap(tmp_path / "trap")
    inputs = tmp_path / "inputs"
    expected: dict[str, set[str]] = {}

    work = make_repo("inputs/work")  # a work tree, mined in place
    expected["work"] = set(hostile_history(work, "work"))

    bare_origin = make_repo("origins/bare")  # a bare repository
    expected["bare"] = set(hostile_history(bare_origin, "bare"))
    bare = inputs / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(bare_origin.path), str(bare)], check=True)

    url_origin = make_repo("origins/url")  # reached through a file:// URL
    expected["url"] = set(hostile_history(url_origin, "url"))
    served = inputs / "served.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(url_origin.path), str(served)], check=True)

    bundle_origin = make_repo("origins/bundle")  # a bundle carries no config, its origin stays clean
    expected["bundle"] = set(hostile_history(bundle_origin, "bundle"))
    bundle = inputs / "hostile.bundle"
    bundle_origin.git("bundle", "create", "-q", str(bundle), "--all")

    export_origin = make_repo("origins/export")  # an export source's remote
    export_shas = hostile_history(export_origin, "exp")
    expected["export"] = set(export_shas)
    remote = inputs / "remotes" / "evil" / "exp.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(export_origin.path), str(remote)], check=True)
    export_file = write_jsonl(inputs / "export.jsonl", [
        export_row(sha, "evil/exp", "mod_exp.py", message) for message, sha in export_shas.items()])

    plant_repository(work.path / ".git", trap, "work")
    plant_repository(bare, trap, "bare")
    plant_repository(served, trap, "url")
    plant_repository(remote, trap, "export")
    env = hostile_environment(tmp_path / "config", trap)

    manifest = inputs / "hostile.yaml"
    manifest.write_text(yaml.safe_dump({
        "name": "hostile", "ray": {"num_cpus": 1},
        "sources": [
            {"type": "git", "repos": [str(work.path), str(bare), f"file://{served}", str(bundle)]},
            {"type": "export", "path": str(export_file), "remote": f"file://{inputs / 'remotes'}/{{repo}}.git",
             "retries": 0},
        ]}))
    temp_dir = Path(tempfile.mkdtemp(prefix="cph-", dir="/tmp"))  # Ray's socket paths must stay short
    env["CODEPREFS_RAY_TMPDIR"] = str(temp_dir)
    output = tmp_path / "out"
    try:
        done = subprocess.run(
            [sys.executable, str(ROOT / "pipelines" / "build_prefs.py"), "--manifest", str(manifest),
             "--output", str(output)],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    finally:
        _stop_ray(temp_dir)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert trap.fired() == [], trap.fired()

    table = pq.read_table(output / "data").to_pylist()
    mined: dict[str, set[str]] = {}
    for row in table:
        tag = row["chosen"].split("def compute_")[1].split("(")[0]
        mined.setdefault(tag if tag != "exp" else "export", set()).add(row["input"])
    for tag, messages in expected.items():
        assert len(mined.get(tag, ())) == len(messages) == 4, (tag, mined.get(tag))


def _stop_ray(temp_dir: Path) -> None:
    """Kill what the build's own local Ray instance left running (matched by its temp dir)."""
    kill_processes_naming(str(temp_dir))
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the repository to another user")
def test_a_repository_owned_by_another_user_is_refused_by_name(make_repo, tmp_path):
    from codeprefs.pipelines.sources.gitrepo import GitError, RepoSpec, resolve

    repo = make_repo("foreign")
    repo.commit("Add module", {"mod.py": module("foreign", 0)})
    for folder, _, files in os.walk(repo.path):
        for name in [folder, *(os.path.join(folder, f) for f in files)]:
            os.chown(name, 65534, 65534)
    with pytest.raises(GitError, match="foreign.*owned by another user"):
        resolve(RepoSpec.parse(str(repo.path), tmp_path), cache_dir=tmp_path / "cache")
