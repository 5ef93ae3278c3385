"""What a source kind is: the small protocol every kind of manifest source implements.

A *source kind* (``git``, ``export``, ``dataset``, ``solutions``; one module each under
:mod:`codeprefs.pipelines.sources.kinds`) does three things:

* declares its settings: ``settings``, the pydantic model of its manifest entry (``type`` is
  its discriminator in the manifest's ``sources`` union);
* plans: :meth:`SourceKind.plan` pins its inputs (repositories to commits, files to hashes),
  failing on a missing or corrupt one before any Ray work, and cuts them into *units* of work
  (a repository at a commit, a chunk of a file);
* describes its rows: each :class:`SourceWork` carries a *recipe*, a frozen dataclass whose
  fields are everything its row pipeline is built from; ``recipe.pipeline(split)`` builds the
  :class:`UnitPipeline` inside the Ray session.

The recipe is also what the source stage's cache fingerprint hashes (see
:func:`codeprefs.pipelines.recipes.settings_data`): a setting reaches a step only through a recipe field,
so no setting can be left out of the fingerprint. The runner (:mod:`codeprefs.pipelines.build`) knows no
kind by name; it plans every kind the manifest uses, computes the commit split once, runs the
units and hands the rows to the shared stages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Protocol

import pyarrow as pa
from pydantic import BeforeValidator, Field

from codeprefs.core.layout import CACHE_DIR
from codeprefs.core.scratch import clones_dir
from codeprefs.core.settings import Settings
from codeprefs.pipelines.recipes import settings_data
from codeprefs.core.store import Store
from codeprefs.pipelines.stagecache import StageDir, code_fingerprint, fingerprint, unit_key


class SourceSettings(Settings):
    """The settings of one manifest source: frozen, and an unknown key is an error naming it."""

    # The key of the entry that names its inputs (``sources.<index>.<paths_key>`` in errors).
    paths_key: ClassVar[str] = "path"

    def expanded(self, base_dir: Path) -> SourceSettings:
        """A copy whose globs are expanded against ``base_dir`` (see
        :func:`codeprefs.core.patterns.expand_patterns`); raises ``PatternError``."""
        return self


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


# One path or glob, or a list of them (at least one).
PathList = Annotated[list[str], BeforeValidator(_one_or_many), Field(min_length=1)]


class SourceError(ValueError):
    """A source's input is missing, corrupt or misconfigured; the message starts
    ``sources.<index>`` and names the input."""


class UnitPipeline:
    """What one unit of a source becomes: a listing step, then per-row steps batch by batch.

    ``listing`` takes a one-row table (the unit) and returns a table or yields tables;
    ``steps`` each take a batch table and return it with columns filled in or drops marked.
    """

    def __init__(self, listing: Callable[[pa.Table], Any], steps: list[Callable[[pa.Table], pa.Table]],
                 batch_rows: int) -> None:
        self.listing = listing
        self.steps = steps
        self.batch_rows = batch_rows

    def batches(self, unit: dict[str, Any]) -> Iterator[pa.Table]:
        listed = self.listing(pa.Table.from_pylist([unit]))
        for table in [listed] if isinstance(listed, pa.Table) else listed:
            for start in range(0, table.num_rows, self.batch_rows):
                batch = table.slice(start, self.batch_rows)
                for step in self.steps:
                    batch = step(batch)
                yield batch


class Recipe(Protocol):
    """A frozen dataclass of everything a unit pipeline is built from (see the module doc)."""

    def pipeline(self, split: Any) -> UnitPipeline:
        """The pipeline, built inside the Ray session; ``split`` is the commit split step
        (``None`` without a ``split`` section; only commit sources use it)."""


@dataclass
class SourceWork:
    """One manifest source's share of the source stage.

    Its folder is keyed by its recipe; inside it, each unit's rows are keyed by the unit itself
    (a repository at a commit, a chunk of a file with that file's hash). A new commit in one
    repository therefore reruns that repository only, and a changed setting reruns the whole
    source.
    """

    index: int  # in the manifest's sources
    units: list[dict[str, Any]]
    recipe: Recipe
    # A unit's rows as listed for the repository-disjoint split (commit sources only): called
    # inside the Ray session with the units, it returns a Ray dataset of listed rows.
    split_listing: Callable[[list[dict[str, Any]], dict[str, float] | None], Any] | None = None
    # The split's fingerprint (its rule and every commit source's inputs), set by the runner on
    # the work of a commit source when the manifest has a split.
    split_key: str | None = None
    reused_units: int = 0
    # Candidate sets this source also makes (pipelines.candidatestage.CandidateWork), or None.
    candidates: Any = None

    @property
    def settings_fingerprint(self) -> str:
        return fingerprint("source", settings_data(self.recipe), self.split_key, code_fingerprint())

    @property
    def unit_keys(self) -> list[str]:
        return list(dict.fromkeys(unit_key(unit) for unit in self.units))

    def fingerprint(self) -> str:
        """What the stage's output depends on: the recipe and every unit."""
        return fingerprint(self.settings_fingerprint, self.unit_keys)

    def stage(self, store: Store) -> StageDir:
        return StageDir(store, "source", self.settings_fingerprint)

    def pending_units(self, store: Store) -> list[str]:
        """The keys of the units whose rows are not kept yet."""
        kept = self.stage(store).units()
        return [key for key in self.unit_keys if key not in kept]


@dataclass(frozen=True)
class PlanContext:
    """What every kind's planning may read besides its own sources (all from the manifest)."""

    base_dir: Path  # relative paths are read against it
    output_dir: Path  # the build's output folder (its .cache holds synthesis and LLM caches)
    commit_steps: Any  # pipelines.sources.kinds.commits.CommitSteps, shared by commit sources
    synthesis: Any  # the manifest's synthesis section (solutions sources)
    batch_rows: int
    # The manifest's ray.scratch_dir as written: recipes carry it to the workers, and each
    # resolves it on its own node (codeprefs.core.scratch); clones and remotes live there.
    scratch_dir: str | None = None

    @property
    def cache_dir(self) -> Path:
        """``<output>/.cache``: synthesis and LLM caches (never clones or fetched remotes)."""
        return self.output_dir / CACHE_DIR

    def planning_clones(self) -> Path:
        """Where planning, on the driver, keeps the clones it pins commits in: the driver's own
        scratch folder (a worker on the same node then finds them there)."""
        return clones_dir(self.scratch_dir)


@dataclass
class Planned:
    """A kind's plan: its work per source and one ``run.json`` input record per input."""

    works: list[SourceWork] = field(default_factory=list)
    inputs: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (source index, record)


class SourceKind(Protocol):
    """One kind of manifest source (see the module doc)."""

    type: ClassVar[str]  # the manifest's `type:` value
    settings: ClassVar[type[SourceSettings]]  # the model of one manifest entry of this kind
    mines_commits: ClassVar[bool]  # the split, message, criteria and pairs sections apply to it

    def plan(self, sources: Sequence[tuple[int, Any]], context: PlanContext) -> Planned:
        """Pin and cut into units this kind's ``(index, settings)`` sources, in manifest order;
        raise :class:`SourceError` naming the bad input."""


def plan_each(sources: Sequence[tuple[int, Any]], plan_one: Callable[[int, Any], SourceWork]) -> Planned:
    """Plan file sources one at a time with ``plan_one``; each work's ``recipe.files`` are its
    input records. A file that is missing or unreadable (``ValueError``, ``OSError``) stops the
    build with a :class:`SourceError` naming its source."""
    planned = Planned()
    for index, source in sources:
        try:
            work = plan_one(index, source)
        except (ValueError, OSError) as error:
            raise SourceError(f"sources.{index}: {error}") from None
        planned.inputs += [(index, record) for record in work.recipe.files]
        planned.works.append(work)
    return planned
