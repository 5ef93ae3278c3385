"""The ``codeprefs`` command line (typer). ``pipelines/build_prefs.py`` runs the same build."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Build code preference pairs and train code reward models on them.")
_err = Console(stderr=True)
_out = Console()


def _fail(message: str) -> None:
    _err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code=2)


@app.command("build")
def build_command(
    manifest: Annotated[Path, typer.Option("--manifest", "-m", help="The run's YAML manifest.")],
    output: Annotated[Path | None, typer.Option("--output", "-o",
                      help="Output folder (default: out/<manifest name>).")] = None,
) -> None:
    """Build preference pairs from MANIFEST into OUTPUT (data/, rejects/, run.json)."""
    from codeprefs.manifest import ManifestError, load_manifest
    from pipelines.build import BuildError, build

    try:
        parsed = load_manifest(manifest)
    except ManifestError as error:
        _fail(str(error))
    target = output or Path("out") / parsed.name
    try:
        record = build(parsed, target, manifest_path=str(manifest))
    except BuildError as error:
        _fail(str(error))
    except Exception as error:  # a stage failed on a Ray worker: show its own message
        cause = _root_cause(error)
        if cause is error:
            raise
        _fail(f"{type(cause).__name__}: {cause}")
    _print_summary(record, target)


def _root_cause(error: BaseException) -> BaseException:
    from pipelines.sources.gitrepo import GitError
    from pipelines.synthesis.pairs import ToolchainMissing

    seen = error
    while seen is not None:
        original = getattr(seen, "cause", None)  # a RayTaskError carries the worker's exception
        if isinstance(original, BaseException) and original is not seen:
            seen = original
            continue
        if isinstance(seen, GitError | ToolchainMissing | ValueError | OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return error


def _print_summary(record: dict, output: Path) -> None:
    table = Table(title=f"{record['name']}: {record['rows']['kept']} pairs kept of "
                        f"{record['rows']['total']} candidates", show_lines=False)
    for column in ("stage", "in", "dropped", "out", "top reasons"):
        table.add_column(column, justify="left" if column in ("stage", "top reasons") else "right")
    for stage in record["funnel"]:
        reasons = sorted(stage["reasons"].items(), key=lambda kv: -kv[1])[:3]
        table.add_row(stage["stage"], str(stage["rows_in"]), str(stage["dropped"]),
                      str(stage["rows_out"]), ", ".join(f"{r} {n}" for r, n in reasons))
    _out.print(table)
    _out.print(f"wrote {len(record['outputs'])} shard(s) to {output.resolve() / 'data'}")


def main() -> None:
    app()
