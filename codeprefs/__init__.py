"""codeprefs: build code preference pairs and train code reward models on them.

The repository's top-level folders ``pipelines/``, ``filters/``, ``parsers/`` and ``trainers/``
are this package's sub-packages (``codeprefs.pipelines`` ...; see pyproject.toml). Installed,
they sit inside it. In a source checkout that is not installed (a Ray job's ``--working-dir``
shipped to a node), the package finds them beside its own folder, so the checkout imports as is.
"""

from pathlib import Path as _Path

__version__ = "0.1.0"

_checkout = _Path(__file__).resolve().parent.parent
if not (_Path(__file__).parent / "pipelines").is_dir() and (_checkout / "pipelines" / "build_prefs.py").is_file():
    __path__.append(str(_checkout))  # noqa: F821 (a package's __path__)
