"""Compatibility names for the old registry of bundled models; the catalogue (catalogue.py) replaces it.

`BUNDLED` is the catalogue (names and aliases), `resolve_model_dir` and `package_dir` are the catalogue's.
`DEFAULT_MODEL` stays the model config.py names by default until that default moves to `catalogue.DEFAULT`.
"""

from __future__ import annotations

from dilm.models.catalogue import CATALOGUE, package_dir, resolve_model_dir

BUNDLED = CATALOGUE
DEFAULT_MODEL = "smollm2-135m-instruct"

__all__ = ["BUNDLED", "DEFAULT_MODEL", "package_dir", "resolve_model_dir"]
