"""The dataset card (README.md with YAML metadata) and its plots, written into an output folder.

The YAML header tells the Hub (and ``datasets.load_dataset(<folder>)``) that the ``train``
split is ``data/train-*``, and describes the features and sizes. The body has the pairs per
language x criterion, the funnel of every stage with its drop reasons, length statistics, the
licenses the manifest declares for its sources, the plots, and the manifest itself.
"""

from __future__ import annotations

from pathlib import Path

import datasets
import pyarrow.parquet as pq
import yaml
from huggingface_hub import DatasetCard, DatasetCardData

from codeprefs.core.schema import PAIR_SCHEMA, Aspect, Language
from codeprefs.stats import (
    funnel_table,
    language_by_criterion,
    length_summary,
    markdown_table,
    no_pairs,
    quality_tables,
    scan_pairs,
)
from codeprefs.pipelines.runrecord import read_run_record

ASSETS_DIR = "assets"
PLOT_PAIRS = f"{ASSETS_DIR}/pairs_by_language_and_criterion.png"
PLOT_LENGTHS = f"{ASSETS_DIR}/lengths.png"


def source_licenses(record: dict) -> list[dict[str, str]]:
    """Each source of the manifest with the license it declares ("unknown" when none)."""
    licenses = []
    for index, source in enumerate(record["manifest"]["sources"]):
        label = source.get("subset") or source["type"]
        licenses.append({"source": f"{index}: {source['type']} ({label})",
                         "license": source.get("license") or "unknown"})
    return licenses


def _card_license(licenses: list[dict[str, str]]) -> str:
    declared = {item["license"] for item in licenses}
    return declared.pop() if len(declared) == 1 and "unknown" not in declared else "other"


def dataset_info(output_dir: Path, record: dict) -> dict:
    in_memory = 0  # uncompressed size from the Parquet footers, without reading the data
    for output in record["outputs"]:
        metadata = pq.read_metadata(output_dir / output["path"])
        in_memory += sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
    info = datasets.DatasetInfo(
        features=datasets.Features.from_arrow_schema(PAIR_SCHEMA),
        splits=datasets.SplitDict({"train": datasets.SplitInfo(
            "train", num_bytes=in_memory, num_examples=record["rows"]["kept"])}),
        download_size=sum(o["bytes"] for o in record["outputs"]),
        dataset_size=in_memory,
    )
    return info._to_yaml_dict()


def write_plots(output_dir: Path) -> list[str]:
    """PNG plots of pairs per language x criterion and of response lengths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (output_dir / ASSETS_DIR).mkdir(exist_ok=True)
    table = language_by_criterion(output_dir)
    languages = [language.value for language in Language]
    aspects = [aspect.value for aspect in Aspect]
    grid = [[int(table.filter(table["language"] == lang)[aspect][0]) for aspect in aspects]
            for lang in languages]
    figure, axes = plt.subplots(figsize=(9, 5))
    image = axes.imshow(grid, cmap="Blues", aspect="auto")
    short = ["".join(word[0] for word in aspect.split("_")) for aspect in aspects]  # FC, RE, ...
    axes.set_xticks(range(len(aspects)), short)
    axes.set_xlabel(", ".join(f"{s} = {a}" for s, a in zip(short, aspects, strict=True)), fontsize=7)
    axes.set_yticks(range(len(languages)), languages)
    for row, values in enumerate(grid):
        for column, value in enumerate(values):
            axes.text(column, row, str(value), ha="center", va="center", fontsize=8)
    axes.set_title("Preference pairs by language and criterion")
    figure.colorbar(image, ax=axes)
    figure.tight_layout()
    figure.savefig(output_dir / PLOT_PAIRS, dpi=100, metadata={"Software": None})
    plt.close(figure)

    lengths = scan_pairs(output_dir).select("chosen_bytes", "rejected_bytes").collect()
    figure, axes = plt.subplots(figsize=(8, 4))
    for column in ("chosen_bytes", "rejected_bytes"):
        values = [max(v, 1) for v in lengths[column].to_list()]
        if values:
            axes.hist(values, bins=40, alpha=0.6, label=column.replace("_bytes", ""), log=False)
    axes.set_xlabel("bytes per response")
    axes.set_ylabel("pairs")
    axes.set_title("Response lengths")
    axes.legend()
    figure.tight_layout()
    figure.savefig(output_dir / PLOT_LENGTHS, dpi=100, metadata={"Software": None})
    plt.close(figure)
    return [PLOT_PAIRS, PLOT_LENGTHS]


def write_card(output_dir: str | Path, pretty_name: str | None = None) -> Path:
    """Write ``README.md`` and the plots into ``output_dir``; return the card's path."""
    output_dir = Path(output_dir)
    record = read_run_record(output_dir)
    licenses = source_licenses(record)
    plots = write_plots(output_dir)
    data = DatasetCardData(
        license=_card_license(licenses),
        pretty_name=pretty_name or record["name"],
        language=["en", "code"],
        tags=["code", "preference", "reward-modeling", "codeprefs"],
        task_categories=["text-generation"],
        size_categories=[_size_category(record["rows"]["kept"])],
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}],
        dataset_info=dataset_info(output_dir, record),
    )
    manifest_yaml = yaml.safe_dump(record["manifest"], sort_keys=False).strip()
    empty = no_pairs(output_dir)
    empty_note = f"\n**This build kept no pair, and has no data files** ({empty}).\n" if empty else ""
    body = f"""
# {pretty_name or record['name']}

Code preference pairs (prompt, chosen, rejected) built with codeprefs from the manifest below:
{record['rows']['kept']} pairs kept of {record['rows']['total']} candidate rows.
{empty_note}
Columns follow the Themis layout (`system, input, chosen, rejected, language, aspect`) plus
provenance (`repo, commit, parent, path, unix_time, message`) and tree-sitter validation signals.

```python
from datasets import load_dataset
pairs = load_dataset("<this repository>", split="train")
```

## Pairs by language and criterion

{markdown_table(language_by_criterion(output_dir))}

![pairs by language and criterion]({plots[0]})

## Funnel: rows in, dropped and out at each stage

{markdown_table(funnel_table(output_dir))}

## Lengths (bytes)

{markdown_table(length_summary(output_dir))}

![response lengths]({plots[1]})

## What the pairs teach

{_quality_markdown(output_dir)}

## Sources and licenses

{markdown_table(_as_frame(licenses))}

Each source's license is as its manifest entry declares it; code mined from repositories keeps
the license of its repository.

## Reproduce

Code: codeprefs {record['code']['codeprefs']} (commit {record['code'].get('git_commit') or 'unknown'}).
Inputs pinned at: {', '.join(_pinned(i) for i in record['inputs']) or 'none'}.

```yaml
{manifest_yaml}
```
"""
    card = DatasetCard.from_template(data, template_str="---\n{{ card_data }}\n---\n" + body)
    path = output_dir / "README.md"
    path.write_text(str(card), encoding="utf-8")
    return path


def _pinned(item: dict) -> str:
    """``repo@commit`` of a repository input, ``file@sha256`` of a file input (both abbreviated)."""
    name = item.get("repo") or item.get("path") or item.get("name") or item.get("type", "?")
    return f"{name}@{(item.get('sha') or item.get('sha256') or 'none')[:12]}"


def _quality_markdown(output_dir: Path) -> str:
    """The quality tables of ``run.json`` (change size, side sizes, scopes, labels per source)."""
    tables = quality_tables(output_dir)
    if not tables:
        return "Not measured by the build that wrote this folder."
    return "\n\n".join(f"{title}:\n\n{markdown_table(frame)}" for title, frame in tables)


def _as_frame(rows: list[dict[str, str]]):
    import polars as pl

    return pl.DataFrame(rows) if rows else pl.DataFrame({"source": [], "license": []})


def _size_category(rows: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if rows < limit:
            return label
    return "10M<n<100M"
