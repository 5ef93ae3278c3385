"""A remote that stalls mid-clone: progress lines while it hangs, then the clone (and its helper
processes) killed at the manifest's ``clone_timeout_s``, with an error naming the repository or,
with ``on_error: skip``, a counted ``repo_error``. Credentials in the URL are never printed."""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from codeprefs.pipelines.manifest import parse_manifest
from codeprefs.pipelines.build import build
from codeprefs.pipelines.sources.gitprogress import without_userinfo
from tests.processes import processes_naming
from codeprefs.pipelines.sources.gitrepo import GitTimeout, RepoSpec, materialize, resolve
from tests.samples import STATS_V1, STATS_V2


def _pkt(text: str) -> bytes:
    return f"{len(text) + 4:04x}{text}".encode()


class StallingRemote:
    """A smart-HTTP git remote on loopback that advertises a real repository's refs, then never
    answers the clone's pack request (the connection stays open until the test ends)."""

    def __init__(self, repo: Path) -> None:
        advertised = subprocess.run(
            ["git", "upload-pack", "--stateless-rpc", "--advertise-refs", str(repo)],
            capture_output=True, check=True,
            env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}).stdout
        advertisement = _pkt("# service=git-upload-pack\n") + b"0000" + advertised
        self.release = threading.Event()
        self.pack_requests = 0
        remote = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/x-git-upload-pack-advertisement")
                self.send_header("Content-Length", str(len(advertisement)))
                self.end_headers()
                self.wfile.write(advertisement)

            def do_POST(self) -> None:
                remote.pack_requests += 1
                remote.release.wait(120)  # stall: never a byte of the pack

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, userinfo: str = "") -> str:
        return f"http://{userinfo}127.0.0.1:{self.port}/stalled.git"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stalling(make_repo, tmp_path):
    origin = make_repo("origin")
    origin.commit("Add statistics helpers", {"stats.py": STATS_V1})
    origin.commit("Fix bug: mean was off by one", {"stats.py": STATS_V2})
    bare = tmp_path / "served.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(origin.path), str(bare)], check=True)
    remote = StallingRemote(bare)
    yield remote
    remote.close()


def test_a_stalled_clone_reports_progress_and_is_killed_at_the_time_limit(stalling, tmp_path, caplog):
    url = stalling.url("builder:s3cret-token@")
    pinned = resolve(RepoSpec.parse(url, tmp_path))  # the ref listing answers
    caplog.set_level(logging.INFO, logger="codeprefs.git")
    started = time.monotonic()
    with pytest.raises(GitTimeout) as caught:
        materialize(pinned, tmp_path / "cache", timeout=2, progress_every=0.4)
    elapsed = time.monotonic() - started

    assert stalling.pack_requests == 1  # it stalled mid-clone, after the refs were read
    assert 2 <= elapsed < 15
    message = str(caught.value)
    assert message.startswith(pinned.spec.name) and "stalled.git" in message
    assert "time limit of 2 s" in message and "killed" in message
    lines = [record.getMessage() for record in caplog.records]
    public = f"127.0.0.1:{stalling.port}/stalled.git"
    assert lines[0] == f"cloning http://{public}"
    still = [line for line in lines if line.startswith(f"still cloning http://{public} (")]
    assert len(still) >= 3 and all(line.endswith("MiB received)") for line in still)
    assert lines[-1].startswith(f"cloning http://{public}: failed after ")
    assert not any("s3cret" in text or "builder" in text for text in [*lines, message])
    assert processes_naming(f"127.0.0.1:{stalling.port}") == {}  # git and git-remote-http gone
    assert not list((tmp_path / "cache").glob(".clone-*"))  # no half clone left behind


def test_without_userinfo_keeps_host_and_port():
    assert without_userinfo("https://u:p@host:8443/o/r.git") == "https://host:8443/o/r.git"
    assert without_userinfo("https://token@host/o/r.git") == "https://host/o/r.git"
    assert without_userinfo("git@github.com:o/r.git") == "github.com:o/r.git"
    assert without_userinfo("/srv/repos/r.git") == "/srv/repos/r.git"


@pytest.mark.ray
def test_clone_timeout_is_a_manifest_setting(ray_local, stalling, make_repo, tmp_path):
    good = make_repo("good")
    good.commit("Add statistics helpers", {"stats.py": STATS_V1})
    good.commit("Fix bug: mean was off by one", {"stats.py": STATS_V2})
    source = {"type": "git", "repos": [str(good.path), stalling.url()], "clone_timeout_s": 2}

    started = time.monotonic()
    with pytest.raises(Exception) as caught:
        build(parse_manifest({"name": "t", "sources": [source]}, tmp_path), tmp_path / "failing")
    assert "stalled.git" in str(caught.value) and "time limit of 2 s" in str(caught.value)

    skipping = {**source, "on_error": "skip"}
    record = build(parse_manifest({"name": "t", "sources": [skipping]}, tmp_path), tmp_path / "out")
    assert time.monotonic() - started < 120
    listing = next(stage for stage in record["funnel"] if stage["stage"] == "list")
    assert listing["reasons"].get("repo_error") == 1
    assert record["rows"]["kept"] == 1
    assert processes_naming(f"127.0.0.1:{stalling.port}") == {}
