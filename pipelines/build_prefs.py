"""Build preference pairs from a manifest, on a local Ray instance or as a Ray job.

    python pipelines/build_prefs.py --manifest manifests/quickstart.yaml --output out/quickstart
    ray job submit --working-dir . -- python pipelines/build_prefs.py \\
        --manifest manifests/quickstart.yaml --output /abs/out

Same as ``codeprefs build``.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: import the project from the repository root, not from pipelines/.
    _root = str(Path(__file__).resolve().parents[1])
    sys.path[0] = _root

from codeprefs.cli import build_command  # noqa: E402


def main() -> None:
    import typer

    typer.run(build_command)


if __name__ == "__main__":
    main()
