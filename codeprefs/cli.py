"""The ``codeprefs`` command line (typer). ``pipelines/build_prefs.py`` runs the same build."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from codeprefs.core.layout import RAY_LOG

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Build code preference pairs and train code reward models on them.")
_err = Console(stderr=True)


@app.callback()
def _commands() -> None:
    """codeprefs: preference pairs for code reward models, and the reward models."""

_out = Console()


def _local_path(text: str) -> Path:
    """A path option or argument; a URL (``s3://...``) is refused, never taken for a relative path."""
    from codeprefs.core.locations import RemoteLocationError, local_path

    try:
        return local_path(text)
    except RemoteLocationError as error:
        raise typer.BadParameter(str(error)) from None


def _fail(message: str) -> None:
    from codeprefs.core.redact import redact_text

    _err.print(f"[bold red]error:[/] {redact_text(message)}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code=2)


@app.command("build")
def build_command(
    manifest: Annotated[Path, typer.Option("--manifest", "-m", parser=_local_path, metavar="<path>", help="The run's YAML manifest.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", parser=_local_path, metavar="<path>",
                      help="Output folder (default: out/<manifest name>).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Finish an interrupted run, reusing its finished work "
                                         "(with none to finish: an ordinary build).")] = False,
    restart: Annotated[bool, typer.Option("--restart", help="Discard an interrupted run's partial work, or a "
                                          "damaged run.json or run state, and build afresh.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Build into a folder that holds files no codeprefs "
                                        "run wrote (they are kept, never deleted).")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v",
                       help="Also print Ray Data's own log lines (otherwise in OUTPUT/.cache/ray.log).")] = False,
) -> None:
    """Build preference pairs from MANIFEST into OUTPUT (data/, rejects/, run.json).

    Unchanged manifest, inputs and code: nothing to do. A changed setting reruns its stage and
    the stages after it. Progress shows per stage: live bars on a terminal, else a line per stage
    every few seconds and one when it finishes.
    """
    from codeprefs.pipelines.manifest import ManifestError, load_manifest
    from codeprefs.pipelines import progress
    from codeprefs.pipelines.build import BuildError, build

    try:
        parsed = load_manifest(manifest)
    except ManifestError as error:
        _fail(str(error))
    target = output or Path("out") / parsed.name
    def log(line: str) -> None:
        _err.print(line, highlight=False, markup=False, soft_wrap=True)

    reporter = progress.RichReporter(_err) if _err.is_terminal else progress.PlainReporter(log)
    try:
        with progress.reporting(reporter), progress.ray_logs_to_file(target / RAY_LOG, verbose):
            record = build(parsed, target, manifest_path=str(manifest), resume=resume, restart=restart,
                           force=force, log=log)
    except BuildError as error:
        _fail(str(error))
    except OSError as error:  # the output folder cannot be created or written
        _fail(f"{error.strerror or error}: {error.filename or target}")
    except Exception as error:  # a stage failed on a Ray worker: show its own message
        cause = _root_cause(error)
        if cause is error:
            raise
        _fail(f"{type(cause).__name__}: {cause}")
    if record.get("up_to_date"):
        _out.print(f"{target}: up to date, nothing to do ({record['rows']['kept']} pairs, "
                   f"fingerprint {record['fingerprints']['write']})")
        return
    _print_summary(record, target)


@app.command("runs")
def runs_command(
    root: Annotated[Path, typer.Argument(parser=_local_path, metavar="ROOT", help="Folder searched for build outputs.")] = Path("out"),
) -> None:
    """List the builds under ROOT: name, state, rows, fingerprint, manifest."""
    from codeprefs.pipelines.runrecord import list_runs

    runs = list_runs(root)
    for run in runs:
        if run.get("problem"):
            _warn(f"{run['problem']}: rebuild it with `codeprefs build --restart`")
    if not runs:
        _out.print(f"no build outputs under {root}")
        return
    table = Table(title=f"builds under {root}")
    for column in ("output", "name", "state", "finished", "kept", "total", "fingerprint", "manifest"):
        table.add_column(column)
    for run in runs:
        table.add_row(run["output"], run["name"], run["state"], run["finished_at"] or "",
                      str(run["kept"]), str(run["total"]), run["fingerprint"] or "", run["manifest_path"] or "")
    _out.print(table)


def _warn(message: str) -> None:
    _err.print(f"[bold yellow]warning:[/] {message}", highlight=False, markup=True, soft_wrap=True)


def _root_cause(error: BaseException) -> BaseException:
    from codeprefs.pipelines.sources.gitrepo import GitError
    from codeprefs.pipelines.synthesis.pairs import ToolchainMissing

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
    import polars as pl

    from codeprefs.tables import print_frame

    rows = [{"stage": stage["stage"], "in": stage["rows_in"], "dropped": stage["dropped"],
             "out": stage["rows_out"],
             "top reasons": ", ".join(f"{r} {n}" for r, n in
                                      sorted(stage["reasons"].items(), key=lambda kv: -kv[1])[:3])}
            for stage in record["funnel"]]
    print_frame(_out, pl.DataFrame(rows), f"{record['name']}: {record['rows']['kept']} pairs kept of "
                                          f"{record['rows']['total']} candidates")
    for warning in record.get("warnings") or []:
        _warn(warning)
    _out.print(f"wrote {len(record['outputs'])} shard(s) to {output.resolve() / 'data'}")
    candidates = record.get("candidates")
    if candidates:  # synthesis.candidates
        share = candidates["passed_share"]
        _out.print(f"wrote {candidates['candidates']} candidates of {candidates['tasks']} task(s)"
                   + (f", {share:.1%} passing," if share is not None else "")
                   + f" to {output.resolve() / 'candidates'}")


@app.command("stats")
def stats_command(
    output: Annotated[Path, typer.Argument(parser=_local_path, metavar="OUTPUT", help="A build's output folder.")],
) -> None:
    """Print pairs per language x criterion and the funnel of a build (names in full, any width)."""
    from codeprefs.stats import funnel_table, language_by_criterion, no_pairs, quality_tables
    from codeprefs.tables import print_frame
    from codeprefs.pipelines.runrecord import RecordError, read_run_state

    try:
        tables = [("pairs by language and criterion", language_by_criterion(output)),
                  ("funnel", funnel_table(output)), *quality_tables(output)]
        empty = no_pairs(output)
    except FileNotFoundError as error:
        _fail(str(error))
    except RecordError as error:
        _fail(f"{error}: rebuild it with `codeprefs build --restart`")
    try:
        read_run_state(output)
    except RecordError as error:
        _warn(f"{error}: the next build there needs --restart")
    for title, frame in tables:
        print_frame(_out, frame, title)
    if empty:
        _out.print(empty, highlight=False, markup=False, soft_wrap=True)


@app.command("publish")
def publish_command(
    output: Annotated[Path, typer.Argument(parser=_local_path, metavar="OUTPUT", help="A build's output folder.")],
    repo: Annotated[str, typer.Option("--repo", help="Dataset repository on the Hub, org/name.")],
    private: Annotated[bool, typer.Option("--private", help="Create the repository private.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the operations; send nothing.")] = False,
) -> None:
    """Write the dataset card and upload OUTPUT to the Hugging Face Hub (token: HF_TOKEN or login)."""
    from codeprefs.publish import PublishError, publish
    from codeprefs.pipelines.runrecord import RecordError

    try:
        publish(output, repo, private=private, dry_run=dry_run, log=lambda line: _out.print(line, highlight=False, markup=False))
    except (PublishError, FileNotFoundError, RecordError) as error:
        _fail(str(error))


_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


@app.command("train", context_settings=_PASS_THROUGH, add_help_option=False)
def train_command(ctx: typer.Context) -> None:
    """Train a reward model: the same as `python -m trainers.train` (see --help)."""
    from codeprefs.trainers.train import main as train_main

    raise typer.Exit(code=train_main(ctx.args))


@app.command("evaluate", context_settings=_PASS_THROUGH, add_help_option=False)
def evaluate_command(ctx: typer.Context) -> None:
    """Evaluate a reward model on pairs: the same as `python -m trainers.evaluate` (see --help)."""
    from codeprefs.trainers.evaluate import main as evaluate_main

    raise typer.Exit(code=evaluate_main(ctx.args))


@app.command("score", context_settings=_PASS_THROUGH, add_help_option=False)
def score_command(ctx: typer.Context) -> None:
    """Score (prompt, response) rows with a reward model: the same as `python -m trainers.score` (see --help)."""
    from codeprefs.trainers.score import main as score_main

    raise typer.Exit(code=score_main(ctx.args))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
