"""The ``codeprefs`` command line (typer). ``pipelines/build_prefs.py`` runs the same build."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
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


def _location(text: str) -> str:
    """A path option or argument that may also be an object-storage URL (``s3://bucket/out``)."""
    from codeprefs.core.storage import is_remote

    return text if is_remote(text) else str(_local_path(text))


@contextmanager
def _local_view(location: str, keep: Callable[[str], bool]) -> Iterator[Path]:
    """``location`` as a local folder: itself, or for a URL a temporary copy of the files ``keep``
    picks (see codeprefs.core.storage); a URL that cannot be read fails the command naming it."""
    from codeprefs.core.storage import StorageError, is_remote, local_copy

    if not is_remote(location):
        yield Path(location)
        return
    try:
        copy = local_copy(location, keep=keep)
        local = copy.__enter__()
    except StorageError as error:
        _fail(str(error))
    try:
        yield local
    finally:
        copy.__exit__(None, None, None)


def _fail(message: str) -> None:
    from codeprefs.core.redact import redact_text

    _err.print(f"[bold red]error:[/] {redact_text(message)}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code=2)


@app.command("build")
def build_command(
    manifest: Annotated[Path, typer.Option("--manifest", "-m", parser=_local_path, metavar="<path>", help="The run's YAML manifest.")],
    output: Annotated[str | None, typer.Option("--output", "-o", parser=_location, metavar="<path|url>",
                      help="Output folder (default: out/<manifest name>); may be an object-storage URL "
                           "(s3://bucket/prefix), which every node of a cluster writes to.")] = None,
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
    from codeprefs.core.store import StorageError, local_cache_dir, open_store

    try:
        store = open_store(output or Path("out") / parsed.name)
    except StorageError as error:
        _fail(str(error))
    target = store.root if store.local else str(store)

    def log(line: str) -> None:
        _err.print(line, highlight=False, markup=False, soft_wrap=True)

    reporter = progress.RichReporter(_err) if _err.is_terminal else progress.PlainReporter(log)
    try:
        with progress.reporting(reporter), progress.ray_logs_to_file(local_cache_dir(store, RAY_LOG), verbose):
            record = build(parsed, store, manifest_path=str(manifest), resume=resume, restart=restart,
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
    root: Annotated[str, typer.Argument(parser=_location, metavar="ROOT",
                    help="Folder searched for build outputs; may be an object-storage URL (s3://bucket/prefix).")] = "out",
) -> None:
    """List the builds under ROOT: name, state, rows, fingerprint, manifest."""
    from codeprefs.core.layout import RUN_RECORD, RUN_STATE
    from codeprefs.core.storage import display_url, is_remote
    from codeprefs.pipelines.runrecord import list_runs

    def records(relative: str) -> bool:
        return PurePosixPath(relative).name == RUN_RECORD or relative.endswith(RUN_STATE.as_posix())

    shown_root = display_url(root)
    with _local_view(root, records) as local:
        runs = list_runs(local)
    if is_remote(root):  # a remote root: name outputs by their URLs, not the temporary copy
        for run in runs:
            relative = os.path.relpath(run["output"], local)
            manifest = run["manifest_path"]
            run["manifest_path"] = manifest and os.path.relpath(manifest, run["output"])
            run["output"] = shown_root.rstrip("/") + ("" if relative == "." else "/" + relative)
            if run.get("problem"):
                run["problem"] = run["problem"].replace(str(local), shown_root.rstrip("/"))
    for run in runs:
        if run.get("problem"):
            _warn(f"{run['problem']}: rebuild it with `codeprefs build --restart`")
    if not runs:
        _out.print(f"no build outputs under {shown_root}")
        return
    table = Table(title=f"builds under {shown_root}")
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


def _print_summary(record: dict, output: Path | str) -> None:
    import polars as pl

    from codeprefs.tables import print_frame

    rows = [{"stage": stage["stage"], "in": stage["rows_in"], "dropped": stage["dropped"],
             "out": stage["rows_out"],
             "top reasons": ", ".join(f"{r} {n}" for r, n in
                                      sorted(stage["reasons"].items(), key=lambda kv: -kv[1])[:3])}
            for stage in record["funnel"]]
    print_frame(_out, pl.DataFrame(rows), f"{record['name']}: {record['rows']['kept']} pairs kept of "
                                          f"{record['rows']['total']} candidates")
    # the build has logged its warnings (to stderr, before this table): not printed twice
    _out.print(f"wrote {len(record['outputs'])} shard(s) to {output}/data")
    candidates = record.get("candidates")
    if candidates:  # synthesis.candidates
        share = candidates["passed_share"]
        _out.print(f"wrote {candidates['candidates']} candidates of {candidates['tasks']} task(s)"
                   + (f", {share:.1%} passing," if share is not None else "")
                   + f" to {output}/candidates")


@app.command("stats")
def stats_command(
    output: Annotated[str, typer.Argument(parser=_location, metavar="OUTPUT",
                      help="A build's output folder; may be an object-storage URL (s3://bucket/out).")],
) -> None:
    """Print pairs per language x criterion and the funnel of a build (names in full, any width)."""
    from codeprefs.core.layout import CACHE_DIR, RUN_STATE
    from codeprefs.core.storage import display_url
    from codeprefs.stats import funnel_table, language_by_criterion, no_pairs, quality_tables
    from codeprefs.tables import print_frame
    from codeprefs.pipelines.runrecord import RecordError, read_run_state

    def read_by_stats(relative: str) -> bool:  # everything but the caches, whose run state aside
        return not relative.startswith(CACHE_DIR + "/") or relative == RUN_STATE.as_posix()

    with _local_view(output, read_by_stats) as local:
        def named(error: Exception) -> str:
            return str(error).replace(str(local), display_url(output))

        try:
            tables = [("pairs by language and criterion", language_by_criterion(local)),
                      ("funnel", funnel_table(local)), *quality_tables(local)]
            empty = no_pairs(local)
        except FileNotFoundError as error:
            _fail(named(error))
        except RecordError as error:
            _fail(f"{named(error)}: rebuild it with `codeprefs build --restart`")
        try:
            read_run_state(local)
        except RecordError as error:
            _warn(f"{named(error)}: the next build there needs --restart")
        for title, frame in tables:
            print_frame(_out, frame, title)
        if empty:
            _out.print(named(empty), highlight=False, markup=False, soft_wrap=True)


@app.command("publish")
def publish_command(
    output: Annotated[str, typer.Argument(parser=_location, metavar="OUTPUT",
                      help="A build's output folder; may be an object-storage URL (s3://bucket/out).")],
    repo: Annotated[str, typer.Option("--repo", help="Dataset repository on the Hub, org/name.")],
    private: Annotated[bool, typer.Option("--private", help="Create the repository private.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the operations; send nothing.")] = False,
) -> None:
    """Write the dataset card and upload OUTPUT to the Hugging Face Hub (token: HF_TOKEN or login).

    An OUTPUT in object storage is read through a local copy of what a publish reads (shards, run
    record, stats; not the caches); the card and its plots written there are copied back to OUTPUT.
    """
    from codeprefs.core.layout import CACHE_DIR
    from codeprefs.core.storage import display_url
    from codeprefs.publish import PublishError, publish
    from codeprefs.pipelines.runrecord import RecordError

    def read_by_publish(relative: str) -> bool:
        return not relative.startswith(CACHE_DIR + "/")

    with _local_view(output, read_by_publish) as local:
        try:
            publish(local, repo, private=private, dry_run=dry_run,
                    log=lambda line: _out.print(line.replace(str(local), display_url(output)),
                                                highlight=False, markup=False))
        except (PublishError, FileNotFoundError, RecordError) as error:
            _fail(str(error).replace(str(local), display_url(output)))
        if local != Path(output):
            _copy_card_back(local, output)


def _copy_card_back(local: Path, output: str) -> None:
    """The card and plots ``publish`` wrote into the local copy, written to the remote ``output``."""
    from codeprefs.card import ASSETS_DIR
    from codeprefs.core.storage import display_url
    from codeprefs.core.store import open_store

    store = open_store(output)
    card = [local / "README.md", *sorted((local / ASSETS_DIR).glob("*.png"))]
    try:
        for path in card:
            store.write_bytes(path.relative_to(local).as_posix(), path.read_bytes())
    except OSError as error:
        _fail(f"published, but the card could not be written back to {display_url(output)}: {type(error).__name__}: {error}")


criteria_app = typer.Typer(no_args_is_help=True, help="Criteria labelling: train a classifier on a build's messages.")
app.add_typer(criteria_app, name="criteria")


@criteria_app.command("train")
def criteria_train_command(
    build: Annotated[Path, typer.Option("--build", "-b", parser=_local_path, metavar="<path>",
                     help="A finished build's output folder: its shards and rejects give the messages.")],
    output: Annotated[Path, typer.Option("--output", "-o", parser=_local_path, metavar="<path>",
                      help="The model file to write (JSON), for filters.criteria.classifier.")],
    min_positives: Annotated[int, typer.Option("--min-positives", min=1, help="A criterion the term rule labels in "
                             "fewer messages gets no classifier (the build keeps the term rule for it).")] = 10,
    match: Annotated[str, typer.Option("--match", help="The term rule giving the seed labels: word, word_start "
                     "or substring.")] = "word",
) -> None:
    """Fit one classifier per criterion on the term rule's labels of BUILD's commit messages."""
    from codeprefs.filters.classifier import ClassifierError, train_classifier
    from codeprefs.filters.criteria import CriteriaLabeler
    from codeprefs.pipelines.criteriadata import BuildMessagesError, build_messages

    if match not in ("word", "word_start", "substring"):
        raise typer.BadParameter(f"{match!r}: expected word, word_start or substring", param_hint="--match")
    try:
        found = build_messages(build)
    except BuildMessagesError as error:
        _fail(str(error))
    if found.sample_rate < 1.0:
        _warn(f"{build}: rejects were sampled (output.rejects.sample_rate {found.sample_rate}): the messages "
              "the term rule did not label are under-represented")
    log = lambda line: _err.print(line, highlight=False, markup=False, soft_wrap=True)  # noqa: E731
    try:
        model = train_classifier(found.messages, CriteriaLabeler(match=match), found.name,  # type: ignore[arg-type]
                                 min_positives=min_positives, details=found.details(), log=log)
    except ClassifierError as error:
        _fail(f"{build}: {error}")
    try:
        model.save(output)
    except OSError as error:
        _fail(f"{error.strerror or error}: {error.filename or output}")
    skipped = ", ".join(f"{aspect.value} ({count})" for aspect, count in model.skipped.items())
    _out.print(f"wrote {output}: {len(model.criteria)} criteria classifiers trained on {model.provenance.messages} "
               f"messages of {found.name}" + (f"; term rule kept for {skipped}" if skipped else ""),
               highlight=False, markup=False, soft_wrap=True)


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


@app.command("rerank", context_settings=_PASS_THROUGH, add_help_option=False)
def rerank_command(ctx: typer.Context) -> None:
    """Keep each task's top-k candidates by reward model score: the same as `python -m trainers.rerank` (see --help)."""
    from codeprefs.trainers.rerank import main as rerank_main

    raise typer.Exit(code=rerank_main(ctx.args))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
