"""Recipes: everything a source's row pipeline is built from, and nothing else.

A source kind describes its pipeline as a frozen dataclass, its *recipe*, whose fields are
the settings its steps take; the recipe's ``pipeline`` method builds the steps from those
fields alone. The source stage's cache fingerprint hashes :func:`settings_data` of the recipe,
so a setting cannot reach a step without also reaching the fingerprint. A field that cannot
change a row (a cache folder, a batch size) is declared with :func:`not_fingerprinted`, which
asks for the reason.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pydantic import BaseModel


def not_fingerprinted(why: str, **kwargs: Any) -> Any:
    """A recipe field left out of the fingerprint; ``why`` says why it cannot change a row."""
    if not why.strip():
        raise ValueError("say why the field cannot change a row")
    return dataclasses.field(metadata={"fingerprint": False, "why": why}, **kwargs)


def settings_data(value: Any) -> Any:
    """``value`` as plain JSON data, for a fingerprint.

    Pydantic models give their JSON dump, dataclasses their fields (less those declared
    :func:`not_fingerprinted`), containers their items; anything else is a ``TypeError``
    naming its type, so an object whose settings cannot be read is never hashed as its repr.
    """
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: settings_data(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.metadata.get("fingerprint", True)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [settings_data(item) for item in value]
    if isinstance(value, set | frozenset):
        return sorted((settings_data(item) for item in value), key=repr)
    if isinstance(value, dict):
        return {str(key): settings_data(item) for key, item in value.items()}
    raise TypeError(f"{type(value).__name__} is not settings data: make it a dataclass or a pydantic "
                    "model, or declare the recipe field not_fingerprinted(why)")
