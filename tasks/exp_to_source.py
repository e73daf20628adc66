"""exp_to_source: regroup the slits of multi-slit exposures by source (Stage 3 spectroscopy).

Stage 2 writes one MultiSlitModel per exposure, holding every slit that exposure saw.  Stage 3
works per source, so the slits are regrouped:

``exp_to_source(exposures) -> {key: MultiExposureModel}``
    One :class:`~webbflow.models.MultiExposureModel` per source, keyed (as jwst keys them) by the
    slit's ``source_name`` when it has one, else by its ``source_id`` (as a string).  Keys keep
    the order in which sources are first met; within a source the slits keep the exposures'
    order.  Each slit's metadata is its exposure's, overlaid with what belongs to the slit
    (``bunit_data``, ``bunit_err``, ``model_type``, ``wcsinfo``, ``photometry``, its WCS and,
    when the slit has one, its exposure type), and it carries the exposure's primary header
    (keywords the metadata does not model); the exposure's own SCI keywords (XPOSURE, TELAPSE,
    MJD-BEG, ...; not RA_V1, PA_APER, ...), which its first slit's SCI header held, go only to the source product's first
    SCI header, as jwst writes them.  The source model's own metadata is the first exposure's,
    with no file name.  Slits are shared, not copied: the input exposures should not be used afterwards.

``source_product_name(template, exp_type, slits, key) -> str``
    The Stage 3 product name of one source (``key`` is its exp_to_source key), from the
    association product name, as jwst 3.0's calwebb_spec3 forms it: the ``{source_id}`` field of
    the template (appended with ``_`` when the template has none) becomes ``s`` and the key
    padded with zeros to 9 characters; for NIRSpec MOS the slits' source id instead of the key,
    and background slitlets (``BKG`` in the source name) take ``b``, virtual slitlets
    (negative ids) ``v`` with the id's digits; NIRSpec fixed slits also fill
    ``{slit_name}`` with the slits' names, lower case, joined by ``-``.  Other fields of the
    template are left as they are.
"""

from __future__ import annotations

import logging
import re
import string

from .. import models
from ..models.meta import KEYWORD_FIELDS, Meta

log = logging.getLogger("webbflow.tasks")

# what a slit keeps of its own when its exposure's metadata is laid over it
_SLIT_OWN = ("bunit_data", "bunit_err", "model_type", "wcsinfo")
_ARRAY_EXTNAMES = {a.extname for a in models.MultiSlitModel.slit_arrays}
# keywords of an exposure's first SCI header that jwst's core schema gives the exposure (times and
# exposure durations), not its first slit: jwst writes them in a source product's first SCI header
# only, from the product's own metadata (other SCI keywords, RA_V1, PA_APER, ..., go with each slit)
_EXPOSURE_SCI_KEYS = {k for path, k, hdu, _a in KEYWORD_FIELDS if hdu == "SCI" and path[0] in ("exposure", "ephemeris")}


def source_key(slit) -> str:
    """jwst's grouping key of a slit: its source name if it has a non-blank one, else its source id."""
    name = slit.source_name
    if name is None or not str(name).strip():
        return str(slit.source_id)
    return str(name)


def _merge(into: dict, over: dict) -> dict:
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v
    return into


def _slit_with_exposure_meta(slit, exposure) -> None:
    """Lay the exposure's metadata over the slit's, keeping what is the slit's own.

    The slit's photometry is its own too: the exposure's was read from its first slit's SCI
    header (jwst's exposure-level metadata has none), and would give every slit the first one's."""
    own = {k: getattr(slit.meta, k) for k in (*_SLIT_OWN, "photometry")}
    slit_type = slit.meta.exposure.type
    wcs = slit.meta.wcs
    tree = slit.meta.model_dump(exclude_none=True)
    tree.pop("wcs", None)
    exp_tree = exposure.meta.model_dump(exclude_none=True)
    exp_tree.pop("wcs", None)
    merged = Meta.model_validate(_merge(tree, exp_tree))
    for k, v in own.items():
        setattr(merged, k, v.model_copy(deep=True) if hasattr(v, "model_copy") else v)
    if slit_type is not None:
        merged.exposure.type = slit_type
    merged.wcs = wcs
    slit.meta = merged


def exp_to_source(exposures) -> dict:
    """Regroup the slits of MultiSlitModel exposures into one MultiExposureModel per source."""
    result: dict = {}
    for exposure in exposures:
        if not isinstance(exposure, models.MultiSlitModel):
            raise TypeError(f"exp_to_source takes MultiSlitModels, not {type(exposure).__name__}")
        log.info("Reorganizing data from exposure %s", exposure.meta.filename)
        for slit in exposure.slits:
            key = source_key(slit)
            source = result.get(key)
            if source is None:
                source = result[key] = models.MultiExposureModel()
                source.meta = exposure.meta.model_copy(deep=True)
                source.meta.model_type = "MultiExposureModel"
                source.meta.wcs = None
                if "PRIMARY" in exposure._headers:
                    source._headers["PRIMARY"] = exposure._headers["PRIMARY"].copy()
            _slit_with_exposure_meta(slit, exposure)
            # a new product: its extensions go in the model's order, as jwst writes them
            slit._hdu_order = [n for n in slit._hdu_order if n not in _ARRAY_EXTNAMES]
            if "PRIMARY" in exposure._headers:  # the exposure's unmodelled keywords go with the slit too
                slit._headers["PRIMARY"] = exposure._headers["PRIMARY"].copy()
            if "SCI" in slit._headers:  # an exposure's first slit: its SCI header held the exposure's keywords
                for k in _EXPOSURE_SCI_KEYS & set(slit._headers["SCI"].keys()):
                    del slit._headers["SCI"][k]
            if slit.meta.exposure.type is not None:
                source.meta.exposure.type = slit.meta.exposure.type
            source.slits.append(slit)
    for source in result.values():
        source.meta.filename = None  # made of several files
    return result


_FIELDS = string.Formatter()


def _fill(template: str, **values) -> str:
    """Fill the named fields given; a value whose field the template lacks is appended with ``_``."""
    out = template
    extra = []
    names = {f for _, f, _, _ in _FIELDS.parse(template) if f}
    for k, v in values.items():
        if k in names:
            out = re.sub(r"\{" + re.escape(k) + r"(![rsa])?(:[^}]*)?\}", lambda _m, v=v: v, out)
        else:
            extra.append(v)
    return "_".join([out, *extra])


def source_id_field(exp_type: str | None, slits, key: str | None = None) -> str:
    """The source part of a per-source product name (``s000000933``, ``b…``, ``v…``)."""
    first = slits[0]
    if exp_type == "NRS_MSASPEC":
        sid = first.source_id
        if "BKG" in str(first.source_name or ""):
            return f"b{sid!s:>09s}"
        if sid is not None and int(sid) < 0:
            return f"v{str(sid)[1:]:>09s}"
        return f"s{sid!s:>09s}"
    return f"s{(key if key is not None else source_key(first))!s:>09s}"


def source_product_name(template: str, exp_type: str | None, slits, key: str | None = None) -> str:
    """jwst's Stage 3 product name of one source (see the module docstring)."""
    srcid = source_id_field(exp_type, slits, key)
    if exp_type == "NRS_FIXEDSLIT":
        names: list[str] = []
        for s in slits:
            n = str(s.name).lower()
            if n not in names:
                names.append(n)
        return _fill(template, source_id=srcid, slit_name="-".join(names))
    return _fill(template, source_id=srcid)
