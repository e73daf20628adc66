"""Association generation as a Prefect flow (``asn-generate``)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from .engine import generate, write_associations
from .pool import read_pool


def generate_files(pool_path, output_dir=".", candidate_ids=None, all_candidates=False,
                   version_id=None, dry_run=False, rules=None, allow_duplicates=False) -> list[str]:
    """Read ``pool_path``, generate its associations (``rules``: default all) and write them to
    ``output_dir``; returns the files written (or, with ``dry_run``, the names they would have)."""
    from .rules import RULES

    pool = read_pool(pool_path, allow_duplicates=allow_duplicates)
    asns = generate(pool, rules=rules or RULES, candidate_ids=candidate_ids, all_candidates=all_candidates,
                    version_id=version_id)
    if dry_run:
        return [a.filename for a in asns]
    return [str(p) for p in write_associations(asns, output_dir)]


@flow(name="asn-generate", persist_result=False, validate_parameters=False)
def asn_generate(pool: str, output_dir: str = ".", candidate_ids: list[str] | None = None,
                 all_candidates: bool = False, version_id: str | None = None, dry_run: bool = False,
                 rules=None, allow_duplicates: bool = False) -> list[str]:
    """Associations from a pool, as jwst's asn_generate makes them; returns the files written."""
    return generate_files(Path(pool), output_dir, candidate_ids, all_candidates, version_id, dry_run, rules,
                          allow_duplicates)
