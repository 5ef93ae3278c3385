"""A node without a clone: clone the repository again, or download a packed copy from object storage?

    .venv/bin/python benchmarks/bench_scratch_clone.py [--rounds 3] [REPO ...]

REPO: local git repositories (default: /work/.mirror/psf+requests/repo). A build unit that lands
on a node whose scratch folder (codeprefs.core.scratch) has no clone of its repository makes one.
Two ways are timed, each into a fresh scratch folder, in alternation, best of ``--rounds``:

* **clone again**: what a worker does today, :func:`codeprefs.pipelines.sources.gitrepo.materialize`
  from the manifest's source; as a local path (``init`` and a fetch of branches, tags and
  remote-tracking branches through ``upload-pack``) and as a ``file://`` URL (``clone --bare``);
* **packed copy**: a ``git bundle`` of the same refs, made and uploaded once (timed apart), is
  downloaded from moto's S3 server on loopback (through s3fs, as ``codeprefs.core.storage`` reads
  object storage) and unbundled (``init --bare``, then ``fetch`` from the bundle file).

Each copy is checked to hold the same refs as the source's branches and tags.

Measured 2026-12-05 on the development machine (2 cores, load average 10-22 from other
sessions: the spread between rounds is large), best of 5 (requests: best of 3 and of 5)::

    repository          bundle    clone again (path)  clone again (file://)  download + unbundle
    psf/requests        13.2 MiB  2.87 s / 2.51 s     2.49 s / 2.03 s        1.61 s / 2.57 s (download 0.03-0.07 s)
    expressjs/express    9.6 MiB  4.87 s              2.48 s                 3.53 s (download 0.09 s)

Making and uploading the bundle once: 0.7-2.0 s and 0.3-0.8 s. (google/gson's mirror lacks an
object, so no bundle can be made of it.) Both ways end in ``git index-pack`` over the whole pack
(the clone's server side mostly reuses the mirror's deltas), which is nearly all of the time; the
download from loopback is a few percent. On one machine they are therefore within the noise of
each other. What this cannot measure is the network: a clone from a hosted remote waits on the
host packing the repository and on the Internet, a download from a bucket in the cluster's region
on the local network; the bundle costs one upload per repository and pinned commit, and a
storage copy of every repository mined.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.motoserver import MotoServer  # noqa: E402
from codeprefs.pipelines.sources.gitrepo import (  # noqa: E402
    SAFE_CONFIG,
    RepoSpec,
    ResolvedRepo,
    materialize,
)

DEFAULT_REPO = Path("/work/.mirror/psf+requests/repo")


def git(*args: str, cwd: Path | None = None) -> str:
    command = ["git", *SAFE_CONFIG, *(["-C", str(cwd)] if cwd else []), *args]
    done = subprocess.run(command, capture_output=True)
    if done.returncode != 0:  # e.g. a mirror that lacks an object: say which and why
        raise SystemExit(f"git {' '.join(args[:2])} in {cwd} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout.decode()


def refs(git_dir: Path) -> dict[str, str]:
    """Branches and tags (what every copy must hold), ref -> object."""
    listing = git("for-each-ref", "--format=%(refname) %(objectname)", "refs/heads", "refs/tags", cwd=git_dir)
    return dict(line.split(" ", 1) for line in listing.splitlines())


def clone_again(spec: RepoSpec, head: str, scratch: Path) -> tuple[float, Path]:
    started = time.perf_counter()
    git_dir = materialize(ResolvedRepo(spec, "HEAD", head, "ok"), scratch / "clones")
    return time.perf_counter() - started, git_dir


def packed_copy(fs, url: str, scratch: Path) -> tuple[float, float, Path]:
    """(download seconds, unbundle seconds, the copy)."""
    scratch.mkdir(parents=True)
    bundle = scratch / "repo.bundle"
    started = time.perf_counter()
    fs.get(url, str(bundle))
    downloaded = time.perf_counter()
    git_dir = scratch / "clones" / "repo.git"
    git("init", "--quiet", "--bare", "--template=", str(git_dir))
    git("-c", "gc.auto=0", "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", str(bundle),
        "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*", cwd=git_dir)
    done = time.perf_counter()
    bundle.unlink()
    return downloaded - started, done - downloaded, git_dir


def bench(repo: Path, rounds: int, fs, bucket: str, work: Path) -> None:
    expected = refs(repo)
    head = git("rev-parse", "HEAD^{commit}", cwd=repo).strip()
    # once: the packed copy made and uploaded (by planning, say)
    bundle = work / f"{repo.parent.name}.bundle"
    started = time.perf_counter()
    git("bundle", "create", "--quiet", str(bundle), "--branches", "--tags", "--remotes", cwd=repo)
    made = time.perf_counter()
    url = f"{bucket}/{bundle.name}"
    fs.put(str(bundle), url)
    uploaded = time.perf_counter()
    size = bundle.stat().st_size
    bundle.unlink()

    times: dict[str, list[float]] = {"path": [], "file://": [], "download": [], "unbundle": [], "packed": []}
    for round_ in range(rounds):
        for name, spec in (("path", RepoSpec.parse(str(repo), work)),
                           ("file://", RepoSpec.parse(f"file://{repo}", work))):
            scratch = work / f"{name.strip(':/')}-{round_}"
            seconds, git_dir = clone_again(spec, head, scratch)
            got = refs(git_dir)
            if name == "file://":  # clone --no-tags: the branches only
                expected_here = {ref: sha for ref, sha in expected.items() if ref.startswith("refs/heads/")}
            else:
                expected_here = expected
            assert got == expected_here, f"{name}: refs differ"
            times[name].append(seconds)
            shutil.rmtree(scratch)
        scratch = work / f"packed-{round_}"
        download, unbundle, git_dir = packed_copy(fs, url, scratch)
        assert refs(git_dir) == expected, "packed copy: refs differ"
        times["download"].append(download)
        times["unbundle"].append(unbundle)
        times["packed"].append(download + unbundle)
        shutil.rmtree(scratch)

    commits = git("rev-list", "--count", "--branches", "--tags", cwd=repo).strip()
    print(f"{repo}: {commits} commits, {len(expected)} branches and tags, bundle {size / 2**20:.1f} MiB "
          f"(made in {made - started:.2f} s, uploaded in {uploaded - made:.2f} s)")
    for name, label in (("path", "clone again, local path (init + fetch via upload-pack)"),
                        ("file://", "clone again, file:// URL (clone --bare, no tags)"),
                        ("download", "packed copy: download from S3 (moto, loopback)"),
                        ("unbundle", "packed copy: unbundle (init + fetch from bundle)"),
                        ("packed", "packed copy: download + unbundle")):
        values = times[name]
        print(f"  {label:58s} best {min(values):6.2f} s   all {', '.join(f'{v:.2f}' for v in values)}")
    print(f"  ratio clone again (path) / packed copy: {min(times['path']) / min(times['packed']):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repos", nargs="*", type=Path, default=[DEFAULT_REPO])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-scratch-"))
    server = MotoServer(work / "moto.log")
    try:
        os.environ.update({"AWS_ENDPOINT_URL": server.endpoint, "AWS_ACCESS_KEY_ID": "bench",
                           "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_DEFAULT_REGION": "us-east-1"})
        import s3fs

        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        fs.mkdir("bench-scratch")
        for repo in args.repos:
            bench(repo.resolve(), args.rounds, fs, "s3://bench-scratch", work)
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
