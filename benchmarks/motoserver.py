"""moto's standalone S3 server on a free loopback port, for the benchmarks that write to or read
from object storage (as tests/s3server.py starts it for the tests). Every request it serves is one
line of its log (``"PUT /bucket/key HTTP/1.1" 200``), which :func:`request_counts` counts."""

from __future__ import annotations

import collections
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

_REQUEST = re.compile(r'"(GET|PUT|POST|HEAD|DELETE) /')


class MotoServer:
    """moto's standalone S3 server on a free loopback port, as tests/s3server.py starts it."""

    def __init__(self, log: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{port}"
        with log.open("wb") as sink:
            self.process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                            stdout=sink, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=2).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.2)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)

    def env(self) -> dict[str, str]:
        """The environment a process needs to reach this server (dummy keys; moto accepts any)."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "codeprefs-bench",
                "AWS_SECRET_ACCESS_KEY": "codeprefs-bench-secret", "AWS_DEFAULT_REGION": "us-east-1"}


def request_counts(log: Path) -> collections.Counter[str]:
    """Requests served so far, by HTTP method (``moto-api`` health checks left out)."""
    counts: collections.Counter[str] = collections.Counter()
    for line in log.read_text(errors="replace").splitlines():
        found = _REQUEST.search(line)
        if found and "/moto-api/" not in line:
            counts[found.group(1)] += 1
    return counts
