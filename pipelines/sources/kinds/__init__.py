"""The source kinds, registered once: the manifest's ``sources`` union is made of their settings.

Adding a kind: write its module here (its settings model, its recipe, a class with ``type``,
``settings``, ``mines_commits`` and ``plan``; see :mod:`codeprefs.pipelines.sources.base`) and add the
class to :data:`SOURCE_KINDS`. Nothing else names a kind.
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from codeprefs.pipelines.sources.base import SourceKind
from codeprefs.pipelines.sources.kinds.dataset import DatasetKind, DatasetSource
from codeprefs.pipelines.sources.kinds.export import PERMISSIVE_LICENSES, ExportKind, ExportSource
from codeprefs.pipelines.sources.kinds.git import GitKind, GitSource, RepoEntry
from codeprefs.pipelines.sources.kinds.solutions import SolutionsKind, SolutionsSource

SOURCE_KINDS: tuple[SourceKind, ...] = (GitKind(), SolutionsKind(), ExportKind(), DatasetKind())

# One manifest source: the settings of whichever kind its `type` names.
Source = Annotated[Union[tuple(kind.settings for kind in SOURCE_KINDS)],  # noqa: UP007
                   Field(discriminator="type")]


def kind_of(source: object) -> SourceKind:
    """The kind whose settings ``source`` is."""
    for kind in SOURCE_KINDS:
        if isinstance(source, kind.settings):
            return kind
    raise TypeError(f"{type(source).__name__} is not the settings of a registered source kind")


__all__ = ["PERMISSIVE_LICENSES", "SOURCE_KINDS", "DatasetSource", "ExportSource", "GitSource", "RepoEntry",
           "Source", "SolutionsSource", "kind_of"]
