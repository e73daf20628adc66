"""Reference data: CRDS selection, reference-file opening, synthetic references.

Public API used by the steps:

- ``get_reference_paths(model, reftypes, overrides) -> {reftype: path or "N/A"}``
- ``open_reference(reftype, path) -> ReferenceFileModel``
"""

from __future__ import annotations

from .select import get_reference_paths, open_reference  # noqa: F401
