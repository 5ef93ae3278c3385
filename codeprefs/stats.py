"""Summaries of a build's output folder: pairs per language x criterion, and the funnel."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from codeprefs.core.schema import PAIR_SCHEMA, Aspect, Language
from codeprefs.pipelines.runrecord import read_run_record


def shard_files(output_dir: str | Path) -> list[Path]:
    files = sorted((Path(output_dir) / "data").glob("train-*.parquet"))
    if not files:
        raise FileNotFoundError(f"no shards under {Path(output_dir) / 'data'}")
    return files


def no_pairs(output_dir: str | Path) -> str | None:
    """Why the build in ``output_dir`` kept no pair (its warning), or ``None`` when it kept some."""
    record = read_run_record(output_dir)
    if record["rows"]["kept"]:
        return None
    warnings = [w for w in record.get("warnings") or [] if w.startswith("no pair kept")]
    return warnings[0] if warnings else "no pair kept: every candidate row was dropped (see the funnel)"


def scan_pairs(output_dir: str | Path) -> pl.LazyFrame:
    """The pairs of ``output_dir``; none (with the pair columns) for a build that kept none."""
    if not list((Path(output_dir) / "data").glob("train-*.parquet")) and no_pairs(output_dir):
        return pl.from_arrow(PAIR_SCHEMA.empty_table()).lazy()
    return pl.scan_parquet(shard_files(output_dir))


def language_by_criterion(output_dir: str | Path) -> pl.DataFrame:
    """Pairs per language (rows) and primary criterion (columns), with totals.

    Every language and criterion appears, with zeros where there are no pairs, so tables from
    different runs line up.
    """
    counts = (
        scan_pairs(output_dir).group_by("language", "aspect").agg(pl.len().alias("pairs")).collect()
    )
    languages = [language.value for language in Language]
    extra = sorted(set(counts["language"]) - set(languages))
    rows = []
    for language in languages + extra:
        row: dict[str, object] = {"language": language}
        for aspect in Aspect:
            match = counts.filter((pl.col("language") == language) & (pl.col("aspect") == aspect.value))
            row[aspect.value] = int(match["pairs"].sum()) if match.height else 0
        row["total"] = sum(v for k, v in row.items() if k != "language")  # type: ignore[misc]
        rows.append(row)
    table = pl.DataFrame(rows)
    totals = {"language": "total", **{c: int(table[c].sum()) for c in table.columns[1:]}}
    return pl.concat([table, pl.DataFrame([totals])])


def funnel_table(output_dir: str | Path) -> pl.DataFrame:
    """One row per stage: rows in, dropped, rows out, and the drop reasons."""
    record = read_run_record(output_dir)
    return pl.DataFrame(
        [
            {
                "stage": stage["stage"],
                "rows_in": stage["rows_in"],
                "dropped": stage["dropped"],
                "rows_out": stage["rows_out"],
                "reasons": ", ".join(f"{reason}: {n}" for reason, n in
                                     sorted(stage["reasons"].items(), key=lambda kv: -kv[1])),
            }
            for stage in record["funnel"]
        ]
    )


def length_summary(output_dir: str | Path) -> pl.DataFrame:
    """Byte lengths of prompts and responses: quantiles per column."""
    frame = scan_pairs(output_dir).select(
        pl.col("input").str.len_bytes().alias("input"),
        pl.col("chosen_bytes").alias("chosen"),
        pl.col("rejected_bytes").alias("rejected"),
    ).collect()
    stats = []
    for column in frame.columns:
        series = frame[column]
        stats.append({"field": column, "min": series.min(), "median": series.median(),
                      "p90": series.quantile(0.9), "max": series.max()})
    return pl.DataFrame(stats)


def markdown_table(frame: pl.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of ``frame`` (no index, values as written)."""
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in frame.rows()]
    return "\n".join([header, rule, *body])


# -- quality: what the pairs teach (computed by the build, read from run.json) -------------------


def quality_tables(output_dir: str | Path) -> list[tuple[str, pl.DataFrame]]:
    """Titled tables of ``run.json``'s ``quality`` section: change size and side sizes (p10, p50,
    p90), scope kinds, and criterion x source/subset counts. Empty for a run recorded before the
    build measured them."""
    quality = read_run_record(output_dir).get("quality")
    if not quality:
        return []
    unit = quality["size_unit"]
    sizes = pl.DataFrame([
        {"measure": "changed lines / pair lines", **quality["change_share"]},
        {"measure": f"chosen ({unit})", **quality["chosen_size"]},
        {"measure": f"rejected ({unit})", **quality["rejected_size"]},
    ], schema={"measure": pl.String, "p10": pl.Float64, "p50": pl.Float64, "p90": pl.Float64})
    scopes = pl.DataFrame([{"scope": kind, "pairs": n} for kind, n in quality["scope"].items()],
                          schema={"scope": pl.String, "pairs": pl.Int64})
    labels = pl.DataFrame(quality["labels"], schema={"aspect": pl.String, "source": pl.String, "pairs": pl.Int64})
    if labels.height:
        labels = labels.pivot(on="source", index="aspect", values="pairs").fill_null(0).sort("aspect")
    return [("change and side sizes", sizes), ("scope kinds", scopes), ("labels per source", labels)]
