"""Reference data: CRDS selection, reference-file opening, synthetic references.

Public API used by the steps:

- ``get_reference_paths(model, reftypes, overrides) -> {reftype: path or "N/A"}``
- ``open_reference(reftype, path) -> ReferenceFileModel``
"""

from __future__ import annotations

from .select import context_used, get_reference_paths, open_reference, record_crds_info  # noqa: F401
