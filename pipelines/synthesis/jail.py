"""The in-sandbox launcher: sets up the jail, runs a job's steps, reports as JSON on stdout.

:mod:`codeprefs.pipelines.synthesis.sandbox` starts this file as a script (``python -I -S jail.py``),
inside fresh mount, network and PID namespaces when it can, and writes the job to its stdin.
It imports only the standard library and runs single-threaded, so ``preexec_fn`` is safe here.

With ``"mount": true`` (namespaces mode, run as root) it first

1. remounts every mount read-only in its private mount namespace, so nothing outside the job's
   folder can be written, whatever the file permissions (``/tmp`` and ``/dev/shm`` included),
2. mounts a size-capped tmpfs on the job folder, so disk use is bounded and nothing is left
   behind, and writes the job's files there, owned by the job's user,
3. mounts a private tmpfs on ``/dev/shm``, capped at the job's largest memory limit,
4. bind-mounts the job's cache folders, writable only during the steps that ask for them.

With a ``"cgroup"`` (see :mod:`codeprefs.pipelines.synthesis.cgroups`) each step starts inside the job's
memory cgroup, whose limit is set to the step's memory limit first; the jail itself steps back
out to its own cgroup, so the kernel's OOM killer only ever picks the step's processes. A step
the OOM killer hit ends ``memory_limit``.

Each step then runs as the job's unprivileged user with ``no_new_privs``, its own session,
resource limits (CPU seconds, data segment, file size, processes, open files, no core files),
a scrubbed environment, a wall-clock timeout and a cap on the output it may print. When a step
ends, every process it left behind is killed.
"""

import base64
import ctypes
import json
import os
import resource
import selectors
import signal
import subprocess
import sys
import time

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
PR_SET_NO_NEW_PRIVS = 38
_FLAG_OPTIONS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}
_TAIL = 8192

_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source, target, fstype, flags, data=None):
    result = _libc.mount(source.encode() if source else None, target.encode(),
                         fstype.encode() if fstype else None, ctypes.c_ulong(flags),
                         data.encode() if data else None)
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"mount {target}: {os.strerror(error)}")


def _mounts():
    """(mount point, flags to keep) for every mount, from /proc/self/mountinfo."""
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            point = fields[4].replace("\\040", " ")
            flags = 0
            for option in fields[5].split(","):
                flags |= _FLAG_OPTIONS.get(option, 0)
            found.append((point, flags))
    return found


def _lock_down(workdir, tmpfs_bytes, shm_bytes, uid, gid, writable):
    for point, flags in _mounts():
        if point == "/proc" or point.startswith(("/proc/", "/sys")):
            continue
        try:
            _mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)
        except OSError:
            if point == "/":
                raise
    owner = f",uid={uid},gid={gid}" if uid is not None else ""
    _mount("tmpfs", workdir, "tmpfs", MS_NOSUID | MS_NODEV,
           f"size={tmpfs_bytes},mode=0700{owner}")
    if os.path.isdir("/dev/shm"):
        _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, f"size={shm_bytes},mode=1777")
    for path in writable:
        _mount(path, path, None, MS_BIND)
    _set_writable(writable, ())


def _set_writable(paths, writable_now):
    for path in paths:
        flags = MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV
        if path not in writable_now:
            flags |= MS_RDONLY
        _mount(None, path, None, flags)


def _write_files(workdir, files, uid, gid):
    os.makedirs(os.path.join(workdir, "tmp"), exist_ok=True)
    for relative, encoded in files.items():
        path = os.path.join(workdir, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(base64.b64decode(encoded))
        if uid is not None:
            os.chown(path, uid, gid)
    for folder, directories, _ in os.walk(workdir):
        for name in directories:
            if uid is not None:
                os.chown(os.path.join(folder, name), uid, gid)


def _limiter(step):
    def apply():
        os.umask(0o077)
        limits = [
            (resource.RLIMIT_CPU, step["cpu_s"], step["cpu_s"] + 1),
            (resource.RLIMIT_FSIZE, step["file_bytes"], step["file_bytes"]),
            (resource.RLIMIT_NOFILE, step["open_files"], step["open_files"]),
            (resource.RLIMIT_CORE, 0, 0),
        ]
        if step.get("memory_bytes"):
            limits.append((resource.RLIMIT_DATA, step["memory_bytes"], step["memory_bytes"]))
        if step.get("processes"):
            limits.append((resource.RLIMIT_NPROC, step["processes"], step["processes"]))
        for kind, soft, hard in limits:
            resource.setrlimit(kind, (soft, hard))
        _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    return apply


def _write(path, value):
    with open(path, "w", encoding="ascii") as handle:
        handle.write(value)


def _set_memory_limit(cgroup, limit):
    """Set the job cgroup's limit for the next step (None: no limit)."""
    path = cgroup["path"]
    if cgroup["version"] == 2:
        _write(os.path.join(path, "memory.max"), str(limit) if limit else "max")
        return
    value = str(limit) if limit else "-1"
    memory = os.path.join(path, "memory.limit_in_bytes")
    swap = os.path.join(path, "memory.memsw.limit_in_bytes")  # only where swap is accounted
    if not os.path.exists(swap):
        _write(memory, value)
        return
    current = int(open(memory, encoding="ascii").read())
    # memsw (memory + swap) may never be below the memory limit: raise it first, lower it last
    order = (swap, memory) if not limit or limit > current else (memory, swap)
    for name in order:
        _write(name, value)


def _oom_kills(cgroup):
    """How many processes the OOM killer has killed in the job cgroup so far."""
    name = "memory.events" if cgroup["version"] == 2 else "memory.oom_control"
    counts = {}
    with open(os.path.join(cgroup["path"], name), encoding="ascii") as handle:
        for line in handle:
            key, _, value = line.partition(" ")
            counts[key] = int(value)
    if "oom_kill" in counts:
        return counts["oom_kill"]
    return counts.get("oom", counts.get("under_oom", 0))


def _reap_orphans():
    """Reap exited children; as PID 1 of the namespace, orphans of a step become ours."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _kill_group(pgid):
    """Kill the step's process group until it is empty (children may be forking meanwhile)."""
    if pgid is None:
        return
    for _ in range(50):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        except OSError:
            return
        _reap_orphans()
        time.sleep(0.01)


def _kill_leftovers(uid, whole_namespace):
    """Kill what a step left running: everything but us in our PID namespace, else by uid."""
    me = os.getpid()
    for _ in range(3):
        victims = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == me:
                continue
            if not whole_namespace:
                try:
                    if os.stat(f"/proc/{entry}").st_uid != uid:
                        continue
                except OSError:
                    continue
            victims.append(int(entry))
        if not victims:
            return
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        _reap_orphans()
        time.sleep(0.01)


def _reap(process, deadline):
    """Wait for the step's process: (return code as Popen reports it, CPU seconds it used).

    Returns (None, 0) when ``deadline`` passes first; the caller then kills and reaps again.
    """
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG if deadline else 0)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return process.returncode, usage.ru_utime + usage.ru_stime
        if time.monotonic() >= deadline:
            os.killpg(process.pid, signal.SIGKILL)
            return None, 0.0
        time.sleep(0.005)


def _spawn(step, workdir, uid, gid, cgroup):
    """Start the step, inside the job's cgroup when there is one (the jail steps back out)."""
    if cgroup:
        _write(os.path.join(cgroup["path"], "cgroup.procs"), "0")
    try:
        return subprocess.Popen(
            step["argv"], cwd=os.path.join(workdir, step.get("cwd") or "."), env=step["env"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, preexec_fn=_limiter(step),
            user=uid, group=gid, extra_groups=[] if uid is not None else None,
        )
    finally:
        if cgroup:
            _write(os.path.join(cgroup["home"], "cgroup.procs"), "0")


def _run_step(step, workdir, uid, gid, cgroup=None):
    started = time.monotonic()
    oom_before = 0
    if cgroup:
        try:
            _set_memory_limit(cgroup, step.get("memory_bytes"))
            oom_before = _oom_kills(cgroup)
        except OSError as error:  # e.g. what earlier steps left in memory exceeds this limit
            return {"pgid": None, "status": "memory_limit", "exit_code": None, "signal": None,
                    "wall_s": 0.0, "stdout": "",
                    "stderr": f"the memory limit could not be set: {error}"}
    try:
        process = _spawn(step, workdir, uid, gid, cgroup)
    except OSError as error:
        return {"pgid": None, "status": "launch_error", "exit_code": None, "signal": None,
                "wall_s": 0.0, "stdout": "", "stderr": f"{step['argv'][0]}: {error.strerror}"}
    buffers = {"stdout": bytearray(), "stderr": bytearray()}
    printed = 0
    over_output = timed_out = False
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ, "stdout")
    selector.register(process.stderr, selectors.EVENT_READ, "stderr")
    deadline = started + step["wall_s"]
    open_streams = 2
    while open_streams:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        for key, _ in selector.select(timeout=min(remaining, 0.5)):
            chunk = os.read(key.fileobj.fileno(), 65536)
            if not chunk:
                selector.unregister(key.fileobj)
                open_streams -= 1
                continue
            printed += len(chunk)
            buffer = buffers[key.data]
            buffer += chunk
            if len(buffer) > 2 * _TAIL:
                del buffer[:-_TAIL]
            if printed > step["output_bytes"]:
                over_output = True
        if over_output:
            break
    if timed_out or over_output:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except OSError:
            pass
    returncode, cpu_s = _reap(process, None if (timed_out or over_output) else deadline)
    if returncode is None:
        timed_out = True
        returncode, cpu_s = _reap(process, None)
    selector.close()
    process.stdout.close()
    process.stderr.close()
    wall = time.monotonic() - started
    killed_by = -returncode if returncode < 0 else None
    out_of_memory = bool(cgroup) and returncode != 0 and _oom_kills(cgroup) > oom_before
    if timed_out:
        status = "timeout"
    elif over_output:
        status = "output_limit"
    elif out_of_memory:
        status = "memory_limit"
    elif killed_by == signal.SIGXCPU or (killed_by == signal.SIGKILL and cpu_s >= step["cpu_s"]):
        status = "cpu_limit"
    elif killed_by == signal.SIGXFSZ:
        status = "file_limit"
    elif killed_by is not None:
        status = "signal"
    else:
        status = "ok" if returncode == 0 else "exit"
    return {
        "pgid": process.pid,
        "status": status, "exit_code": returncode if returncode >= 0 else None,
        "signal": killed_by, "wall_s": round(wall, 4),
        "stdout": bytes(buffers["stdout"][-_TAIL:]).decode("utf-8", "replace"),
        "stderr": bytes(buffers["stderr"][-_TAIL:]).decode("utf-8", "replace"),
    }


def main():
    job = json.loads(sys.stdin.read())
    workdir, uid, gid = job["workdir"], job.get("uid"), job.get("gid")
    writable = job.get("writable", [])
    report = {"steps": [], "setup_error": None}
    try:
        if job.get("mount"):
            _lock_down(workdir, job["tmpfs_bytes"], job.get("shm_bytes") or job["tmpfs_bytes"],
                       uid, gid, writable)
        _write_files(workdir, job["files"], uid, gid)
    except OSError as error:
        report["setup_error"] = str(error)
        print(json.dumps(report))
        return
    for step in job["steps"]:
        if job.get("mount") and writable:
            _set_writable(writable, step.get("writable", ()))
        result = _run_step(step, workdir, uid, gid, job.get("cgroup"))
        result["name"] = step["name"]
        report["steps"].append(result)
        _kill_group(result.pop("pgid"))
        if job.get("mount") or uid is not None:
            _kill_leftovers(uid, whole_namespace=bool(job.get("mount")))
        if result["status"] != "ok" and job.get("stop_on_failure", True):
            break
    sys.stdout.write(json.dumps(report))


if __name__ == "__main__":
    main()
