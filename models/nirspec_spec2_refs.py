"""NIRSpec spec2 reference models: wavecorr, the slit and MSA pixel areas, and pathloss apertures.

- ``WaveCorrModel`` (ASDF): ``apertures``, a list of {aperture_name, width, variance,
  zero_point_offset}; the offset is an astropy ``Tabular2D`` of (wavelength in metres, source
  position across the slit from -0.5 to 0.5) giving the wavelength shift in pixels.
- ``NirspecSlitAreaModel`` (FITS): an AREA table of (SLIT_ID, PIXAREA) per fixed slit, the pixel
  area in arcsec^2; ``NirspecMosAreaModel``: (QUADRANT, SHUTTER_X, SHUTTER_Y, PIXAREA) per shutter;
  ``NirspecIfuAreaModel``: (SLICE_ID, PIXAREA) per IFU slice.
  Both are area references (PixelAreaModel subclasses) with no SCI array.
- :func:`pathloss_apertures`: the apertures of a NIRSpec ``PathlossModel`` FITS file (PS, PSVAR,
  UNI, UNIVAR extensions, one EXTVER per aperture) as jwst's model lists them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ReferenceFileError
from .base import ArraySpec as A
from .classes import REFERENCE_MODELS, PixelAreaModel, _AsdfTreeModel


class WaveCorrModel(_AsdfTreeModel):
    reftype = "wavecorr"


class NirspecSlitAreaModel(PixelAreaModel):
    arrays = (A("area_table", "AREA", table=True, required=True),)


class NirspecMosAreaModel(PixelAreaModel):
    arrays = (A("area_table", "AREA", table=True, required=True),)


class NirspecIfuAreaModel(PixelAreaModel):
    arrays = (A("area_table", "AREA", table=True, required=True),)


REFERENCE_MODELS["wavecorr"] = WaveCorrModel


@dataclass
class PathlossAperture:
    name: str
    shutters: int | None
    pointsource_data: np.ndarray
    pointsource_wcs: dict = field(default_factory=dict)  # crpix1..3, crval1..3, cdelt1..3
    uniform_data: np.ndarray | None = None
    uniform_wcs: dict = field(default_factory=dict)


def _wcs(header, axes) -> dict:
    out = {}
    for k in ("crpix", "crval", "cdelt"):
        for i in axes:
            v = header.get(f"{k.upper()}{i}")
            out[f"{k}{i}"] = None if v is None else float(v)
    return out


def pathloss_apertures(ref) -> list[PathlossAperture]:
    """The apertures of a NIRSpec pathloss reference (a ReferenceFileModel with PS/UNI extensions)."""
    name = getattr(ref.meta, "filename", None) or "<in memory>"
    by_ver: dict[int, dict] = {}
    for hdu in getattr(ref, "_extra_hdus", []):
        if hdu.name in ("PS", "PSVAR", "UNI", "UNIVAR"):
            by_ver.setdefault(int(hdu.ver or 1), {})[hdu.name] = hdu
    if not by_ver:
        raise ReferenceFileError("pathloss", name, "has no PS/UNI extensions (not a NIRSpec pathloss file)")
    out = []
    for ver in sorted(by_ver):
        h = by_ver[ver]
        if "PS" not in h:
            raise ReferenceFileError("pathloss", name, f"aperture {ver} has no PS extension")
        ps = h["PS"]
        uni = h.get("UNI")
        shutters = ps.header.get("SHUTTERS")
        out.append(PathlossAperture(
            name=str(ps.header.get("APERTURE", "")), shutters=None if shutters is None else int(shutters),
            pointsource_data=np.asarray(ps.data, dtype=np.float32), pointsource_wcs=_wcs(ps.header, (1, 2, 3)),
            uniform_data=None if uni is None else np.asarray(uni.data, dtype=np.float32),
            uniform_wcs={} if uni is None else _wcs(uni.header, (1,))))
    return out
