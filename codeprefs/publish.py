"""Publish an output folder to the Hugging Face Hub as a dataset repository.

``publish`` writes the dataset card, plans the upload (card, plots, run record and every
shard, checked against the sha256 sums in ``run.json``), then commits the files in batches
of at most 50 (the Hub takes fewer than 100 files per commit). Before each run it lists what
the repository already holds and skips files whose content is already there, so an
interrupted publish resumes where it stopped; shards of an earlier, larger run that this run
did not write are deleted in the last commit. Finally it lists the repository again and checks
every file's size and hash. A build that kept no pair is not published (see :func:`plan_upload`).

The token comes from the environment (``HF_TOKEN``) or the Hub login, through huggingface_hub;
codeprefs never prints it or writes it anywhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from codeprefs.card import ASSETS_DIR, write_card
from codeprefs.stats import no_pairs
from codeprefs.core.layout import RUN_RECORD
from codeprefs.pipelines.runrecord import read_run_record
from codeprefs.pipelines.shards import DATA_DIR

MAX_SHARD_BYTES = 500_000_000
MAX_FILES_PER_COMMIT = 50
MAX_FILES_PER_FOLDER = 10_000


class PublishError(RuntimeError):
    """Publishing cannot go on; the message says what to fix."""


@dataclass(frozen=True)
class LocalFile:
    path_in_repo: str
    local: Path
    size: int
    sha256: str
    git_sha1: str  # the git blob id, which the Hub reports for files not stored in LFS


@dataclass
class UploadPlan:
    repo_id: str
    private: bool
    files: list[LocalFile]
    uploads: list[LocalFile] = field(default_factory=list)  # after comparing with the Hub
    deletions: list[str] = field(default_factory=list)

    def commits(self) -> list[tuple[list[LocalFile], list[str]]]:
        """(files to add, paths to delete) per commit; deletions go with the last one."""
        batches = [self.uploads[i : i + MAX_FILES_PER_COMMIT]
                   for i in range(0, len(self.uploads), MAX_FILES_PER_COMMIT)]
        if not batches and self.deletions:
            batches = [[]]
        return [(batch, self.deletions if index == len(batches) - 1 else [])
                for index, batch in enumerate(batches)]


def _describe(path: Path, path_in_repo: str) -> LocalFile:
    data_hash = hashlib.sha256()
    size = path.stat().st_size
    blob_hash = hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            data_hash.update(chunk)
            blob_hash.update(chunk)
    return LocalFile(path_in_repo, path, size, data_hash.hexdigest(), blob_hash.hexdigest())


def plan_upload(output_dir: str | Path, repo_id: str, private: bool = False) -> UploadPlan:
    """Every file to publish, checked against the run record and the Hub's limits."""
    output_dir = Path(output_dir)
    record = read_run_record(output_dir)
    if "/" not in repo_id or repo_id.count("/") != 1:
        raise PublishError(f"--repo must look like 'org/name', got {repo_id!r}")
    empty = no_pairs(output_dir)
    if empty or not record["outputs"]:
        # Uploading only the card would give a repository load_dataset cannot load, and would
        # delete the shards an earlier publish put there.
        raise PublishError(f"{output_dir}: nothing to publish ({empty or 'no shard'}); the local "
                           f"README.md says so, and no dataset without data is uploaded")
    files = [_describe(output_dir / "README.md", "README.md"),
             _describe(output_dir / RUN_RECORD, RUN_RECORD)]
    files += [_describe(p, f"{ASSETS_DIR}/{p.name}") for p in sorted((output_dir / ASSETS_DIR).glob("*.png"))]
    for output in record["outputs"]:
        path = output_dir / output["path"]
        if not path.is_file():
            raise PublishError(f"{path} is listed in {RUN_RECORD} but missing")
        if output["bytes"] > MAX_SHARD_BYTES:
            raise PublishError(f"{path} has {output['bytes']} bytes; shards must stay <= {MAX_SHARD_BYTES}")
        described = _describe(path, output["path"])
        if described.sha256 != output["sha256"]:
            raise PublishError(f"{path} changed since the run wrote it (sha256 differs from {RUN_RECORD})")
        files.append(described)
    if len(record["outputs"]) >= MAX_FILES_PER_FOLDER:
        raise PublishError(f"{len(record['outputs'])} shards in {DATA_DIR}/: the Hub takes < {MAX_FILES_PER_FOLDER} per folder")
    return UploadPlan(repo_id, private, files)


def _remote_files(api, repo_id: str) -> dict[str, tuple[int, str | None, str | None]]:
    """path -> (size, LFS sha256 or None, git blob id) for every file in the dataset repository."""
    from huggingface_hub.hf_api import RepoFile

    remote = {}
    for entry in api.list_repo_tree(repo_id, repo_type="dataset", recursive=True):
        if isinstance(entry, RepoFile):
            lfs_sha = entry.lfs.sha256 if entry.lfs else None
            remote[entry.path] = (entry.size, lfs_sha, entry.blob_id)
    return remote


def _already_there(local: LocalFile, remote: tuple[int, str | None, str | None] | None) -> bool:
    if remote is None or remote[0] != local.size:
        return False
    _, lfs_sha, blob_id = remote
    return lfs_sha == local.sha256 if lfs_sha else blob_id == local.git_sha1


def publish(
    output_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    dry_run: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
    log: Callable[[str], None] = print,
) -> UploadPlan:
    """Write the card and publish ``output_dir`` to the dataset repository ``repo_id``."""
    import httpx2
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    output_dir = Path(output_dir)
    write_card(output_dir)
    plan = plan_upload(output_dir, repo_id, private)
    if dry_run:
        plan.uploads = list(plan.files)
        log(f"create dataset repository {repo_id} (private={private}) if missing")
        _log_commits(plan, log, prefix="would ")
        log("dry run: nothing was sent to the Hub")
        return plan

    api = HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        remote = _remote_files(api, repo_id)
        plan.uploads = [f for f in plan.files if not _already_there(f, remote.get(f.path_in_repo))]
        wanted = {f.path_in_repo for f in plan.files}
        plan.deletions = sorted(p for p in remote if p.startswith(f"{DATA_DIR}/") and p not in wanted)
        skipped = len(plan.files) - len(plan.uploads)
        if skipped:
            log(f"{skipped} file(s) already on the Hub with the same content: skipped")
        _log_commits(plan, log)
        commits = plan.commits()
        for number, (batch, deletions) in enumerate(commits, start=1):
            operations = [CommitOperationAdd(f.path_in_repo, str(f.local)) for f in batch]
            operations += [CommitOperationDelete(path) for path in deletions]
            api.create_commit(repo_id, operations, repo_type="dataset",
                              commit_message=f"codeprefs: publish {output_dir.name} ({number}/{len(commits)})")
        _verify(plan, _remote_files(api, repo_id))
    except (httpx2.TransportError, OfflineModeIsEnabled) as error:
        raise PublishError(f"cannot reach the Hub ({api.endpoint}): {type(error).__name__}: {error}") from None
    except HfHubHTTPError as error:
        raise PublishError(f"the Hub refused the request: {error}") from None
    log(f"published {len(plan.files)} file(s) to datasets/{repo_id}; verified sizes and hashes")
    return plan


def _log_commits(plan: UploadPlan, log: Callable[[str], None], prefix: str = "") -> None:
    commits = plan.commits()
    for number, (batch, deletions) in enumerate(commits, start=1):
        log(f"{prefix}commit {number}/{len(commits)} to datasets/{plan.repo_id}:")
        for f in batch:
            log(f"  add {f.path_in_repo} ({f.size} bytes, sha256 {f.sha256[:16]})")
        for path in deletions:
            log(f"  delete {path}")


def _verify(plan: UploadPlan, remote: dict[str, tuple[int, str | None, str | None]]) -> None:
    problems = [f.path_in_repo for f in plan.files if not _already_there(f, remote.get(f.path_in_repo))]
    problems += [f"{p} (should be deleted)" for p in plan.deletions if p in remote]
    if problems:
        raise PublishError(f"after upload the Hub disagrees on: {', '.join(problems)}")
