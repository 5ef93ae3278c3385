"""An in-memory stand-in for the Hugging Face Hub's HTTP API, plugged in as an httpx transport.

Only the network layer is replaced: huggingface_hub's own client code (create_repo,
list_repo_tree, preupload, create_commit's NDJSON payload) runs unchanged against it. It answers
every preupload with "regular" so file contents arrive inline in the commit, and reports
Parquet and PNG files the way the Hub does for LFS files (with their sha256).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re

import httpx2
import huggingface_hub
import pytest


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.private: dict[str, bool] = {}
        self.commits: list[dict] = []  # {"repo", "summary", "added": [paths], "deleted": [paths]}
        self.requests: list[str] = []
        self.fail_commit_after: int | None = None  # simulate a crash after N commits

    def transport(self) -> httpx2.MockTransport:
        return httpx2.MockTransport(self.handle)

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        self.requests.append(f"{request.method} {path}")
        if request.method == "POST" and path == "/api/repos/create":
            body = json.loads(request.content)
            repo = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
            self.repos.setdefault(repo, {})
            self.private[repo] = body.get("visibility") == "private" or bool(body.get("private"))
            return httpx2.Response(200, json={"url": f"{self._origin(request)}/datasets/{repo}"})
        if request.method == "POST" and path == "/api/validate-yaml":
            return httpx2.Response(200, json={})
        match = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/(tree|preupload|commit)/main(/.*)?", path)
        if not match or match.group(1) not in self.repos:
            return httpx2.Response(404, json={"error": f"no route {request.method} {path}"},
                                   headers={"X-Error-Code": "RepoNotFound"})
        repo, verb = match.group(1), match.group(2)
        files = self.repos[repo]
        if verb == "tree":
            return httpx2.Response(200, json=[self._entry(p, d) for p, d in sorted(files.items())])
        if verb == "preupload":
            wanted = json.loads(request.content)["files"]
            return httpx2.Response(200, json={"files": [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in wanted]})
        if self.fail_commit_after is not None and len(self.commits) >= self.fail_commit_after:
            return httpx2.Response(500, json={"error": "simulated outage"})
        lines = [json.loads(line) for line in request.read().decode().splitlines() if line.strip()]
        commit = {"repo": repo, "summary": None, "added": [], "deleted": []}
        for line in lines:
            if line["key"] == "header":
                commit["summary"] = line["value"]["summary"]
            elif line["key"] == "file":
                files[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
                commit["added"].append(line["value"]["path"])
            elif line["key"] == "deletedFile":
                files.pop(line["value"]["path"], None)
                commit["deleted"].append(line["value"]["path"])
        self.commits.append(commit)
        oid = hashlib.sha1(str(len(self.commits)).encode()).hexdigest()
        return httpx2.Response(200, json={"commitUrl": f"{self._origin(request)}/datasets/{repo}/commit/{oid}",
                                          "commitOid": oid})

    @staticmethod
    def _origin(request: httpx2.Request) -> str:
        return f"{request.url.scheme}://{request.url.host}"

    @staticmethod
    def _entry(path: str, data: bytes) -> dict:
        entry = {"type": "file", "path": path, "size": len(data), "oid": git_blob_id(data)}
        if path.endswith((".parquet", ".png")):
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 130}
        return entry


@pytest.fixture
def hub():
    """A FakeHub that huggingface_hub's client talks to for the length of the test."""
    fake = FakeHub()
    huggingface_hub.set_client_factory(lambda: httpx2.Client(transport=fake.transport()))
    yield fake
    huggingface_hub.set_client_factory(lambda: httpx2.Client())
