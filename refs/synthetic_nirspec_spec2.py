"""Synthetic NIRSpec spec2 references in the form CRDS delivers them (PathlossModel, NrsFsPhotomModel,
NrsMosPhotomModel, NirspecSlitAreaModel, NirspecMosAreaModel, WaveCorrModel).

- ``pathloss`` (PathlossModel, FITS): per aperture four extensions with the aperture's EXTVER:
  PS (point source, wavelength x y x x in the slit, (0, 0) its centre, x and y in units of the
  slit's width and length), PSVAR, UNI (uniform source, per wavelength) and UNIVAR; APERTURE and
  SHUTTERS and the grid's CRPIX/CRVAL/CDELT 1..3 (wavelengths in metres) in the PS and UNI headers.
  Fixed slits: one aperture per slit (S200A1, S200A2, S400A1, S1600A1, S200B1), x and y from -0.5
  to 0.5.  MSA: MOS1x1 and MOS1x3 (y from -1.5 to 1.5: three shutters).  The point-source loss is
  the fraction of a Gaussian PSF (FWHM twice the diffraction limit of a 6.5 m aperture, plus a 0.05"
  floor) that passes the slit, the uniform loss a slow diffraction loss that grows with
  wavelength and narrows with the slit.
- ``photom`` (NrsFsPhotomModel): the real fixed-slit file's rows (filter, grating, slit) with a
  PHOTMJ and a relative response that varies with wavelength (the real delivered file, a DUMMY,
  has 1.0 everywhere, which would not test the arithmetic); ``photom`` for the MSA
  (NrsMosPhotomModel) has one row per filter and grating.
- ``area``: the fixed-slit NirspecSlitAreaModel is the real one (../shared/data); the MSA's
  (NirspecMosAreaModel) has a row per shutter of the quadrants (quadrant, shutter_x, shutter_y,
  pixarea) with the nominal shutter area.
- ``wavecorr``: the real fixed-slit file plus a ``MOS`` aperture (the zero-point offset of the
  S200A1 table scaled to the shutter width), as the flight file has.
- ``msaoper`` (JSON, as CRDS delivers jwst_nirspec_msaoper_*.json): a ``msaoper`` list of the
  inoperable shutters (Q, x, y and their states), a few stuck open and stuck closed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

AUTHOR = "webbflow synthetic"
PEDIGREE = "GROUND"
USEAFTER = "2015-11-01T00:00:00"
FS_APERTURES = {  # width x length, arcsec
    "S200A1": (0.2, 3.3), "S200A2": (0.2, 3.3), "S400A1": (0.4, 3.8), "S1600A1": (1.6, 1.6), "S200B1": (0.2, 3.3)}
SHUTTER = (0.20, 0.46)  # the MSA's open area per shutter, arcsec
WAVE_M = (6.0e-7, 5.3e-6)
NWAVE = 48


def psf_sigma_arcsec(lam_m):
    fwhm = np.hypot(2.0 * 1.03 * lam_m / 6.5 * 206264.806, 0.05)  # the core and the wings, roughly
    return fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def _box(half, offset, sigma):
    from scipy.special import erf

    s = sigma * math.sqrt(2.0)
    return 0.5 * (erf((half - offset) / s) + erf((half + offset) / s))


def point_source_throughput(lam_m, x, y, width, length):
    """Fraction of a point source at (x, y) (in slit widths and lengths from the centre) passing the slit."""
    sig = psf_sigma_arcsec(lam_m)
    return _box(width / 2.0, x * width, sig) * _box(length / 2.0, y * length, sig)


def uniform_throughput(lam_m, width):
    return 1.0 - 0.06 * (lam_m / 5.0e-6) * (0.2 / width) ** 0.5


def _primary(reftype, datamodel, exp_type, p_exptype, description, **extra):
    from astropy.io import fits

    h = fits.Header()
    h["DATAMODL"] = (datamodel, "Type of data model")
    h["TELESCOP"] = ("JWST", "Telescope used to acquire the data")
    h["INSTRUME"] = ("NIRSPEC", "Instrument used to acquire the data")
    for k, v in extra.items():
        h[k.upper()] = v
    h["EXP_TYPE"] = (exp_type, "Type of data in the exposure")
    h["P_EXP_TY"] = p_exptype
    h["REFTYPE"] = (reftype, "Reference file type")
    h["DESCRIP"] = description
    h["AUTHOR"] = (AUTHOR, "Author of the reference file")
    h["PEDIGREE"] = (PEDIGREE, "The pedigree of the reference file")
    h["USEAFTER"] = (USEAFTER, "Use after date of the reference file")
    return h


def _write(path: Path, hdus) -> Path:
    from astropy.io import fits

    from ..models.atomic import atomic_open

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        fits.HDUList(hdus).writeto(f)
    return path


def _aperture_hdus(name, shutters, ver, width, length, ny, y0):
    """PS, PSVAR, UNI, UNIVAR of one aperture (grid x: 21 points over -0.5..0.5; y: ny from y0 by 0.05)."""
    from astropy.io import fits

    lam = WAVE_M[0] + np.arange(NWAVE) * (WAVE_M[1] - WAVE_M[0]) / (NWAVE - 1)
    xs = -0.5 + 0.05 * np.arange(21)
    ys = y0 + 0.05 * np.arange(ny)
    ps = point_source_throughput(lam[:, None, None], xs[None, None, :], ys[None, :, None], width, length)
    un = uniform_throughput(lam, width)
    hdus = []
    for ext, data in (("PS", ps), ("PSVAR", 1e-4 * ps), ("UNI", un), ("UNIVAR", 1e-4 * un)):
        h = fits.Header()
        if ext in ("PS", "UNI"):
            h["APERTURE"] = (name, "Aperture name")
            h["SHUTTERS"] = (shutters, "Number of shutters")
        if ext == "PS":
            h["WCSAXES"] = 3
            h["CRPIX1"], h["CRVAL1"], h["CDELT1"] = 1.0, -0.5, 0.05
            h["CRPIX2"], h["CRVAL2"], h["CDELT2"] = 1.0, float(y0), 0.05
            h["CRPIX3"], h["CRVAL3"], h["CDELT3"] = 1.0, WAVE_M[0], (WAVE_M[1] - WAVE_M[0]) / (NWAVE - 1)
        elif ext == "UNI":
            h["WCSAXES"] = 1
            h["CRPIX1"], h["CRVAL1"], h["CDELT1"] = 1.0, WAVE_M[0], (WAVE_M[1] - WAVE_M[0]) / (NWAVE - 1)
        hdu = fits.ImageHDU(np.asarray(data, dtype=np.float32), header=h, name=ext)
        hdu.ver = ver
        hdus.append(hdu)
    return hdus


def write_pathloss(path, mode: str = "FS") -> Path:
    """The NIRSpec pathloss reference for the fixed slits (``mode="FS"``) or the MSA (``"MOS"``)."""
    from astropy.io import fits

    hdus = []
    if mode.upper() == "FS":
        for ver, (name, (w, ln)) in enumerate(FS_APERTURES.items(), start=1):
            hdus += _aperture_hdus(name, 1, ver, w, ln, 21, -0.5)
        h = _primary("PATHLOSS", "PathlossModel", "NRS_FIXEDSLIT", "NRS_FIXEDSLIT|NRS_BRIGHTOBJ|",
                     "NIRSpec fixed-slit pathloss (webbflow synthetic)")
    else:
        hdus += _aperture_hdus("MOS1x1", 1, 1, SHUTTER[0], SHUTTER[1], 21, -0.5)
        hdus += _aperture_hdus("MOS1x3", 3, 2, SHUTTER[0], SHUTTER[1], 61, -1.5)
        h = _primary("PATHLOSS", "PathlossModel", "NRS_MSASPEC", "NRS_MSASPEC|",
                     "NIRSpec MSA pathloss (webbflow synthetic)")
    return _write(path, [fits.PrimaryHDU(header=h)] + hdus)


def response(lam_um, grating: str):
    """A smooth relative response (peaks mid-band)."""
    mid = float(np.mean(lam_um)) if np.size(lam_um) else 1.0
    return 1.0 + 0.3 * np.sin(0.9 * (np.asarray(lam_um) - mid))


def write_fs_photom(path, real_path) -> Path:
    """The fixed-slit photom in the real file's form (its rows), with PHOTMJ and RELRESPONSE that vary."""
    from astropy.io import fits

    with fits.open(real_path) as real:
        h = real[0].header.copy()
        table = real["PHOTOM"].data.copy()
        theader = real["PHOTOM"].header.copy()
    for i, row in enumerate(table):
        n = int(row["nelem"])
        lam = np.asarray(row["wavelength"][:n], float)
        table["photmj"][i] = 2.0e-12 * (1.0 + 0.1 * i / len(table))
        rr = np.zeros_like(row["relresponse"])
        rr[:n] = response(lam, str(row["grating"]))
        table["relresponse"][i] = rr
    h["AUTHOR"], h["PEDIGREE"] = AUTHOR, PEDIGREE
    h["DESCRIP"] = "NIRSpec fixed-slit photom (webbflow synthetic, in the form of jwst_nirspec_photom_0014)"
    return _write(path, [fits.PrimaryHDU(header=h), fits.BinTableHDU(table, header=theader, name="PHOTOM")])


def write_wavecorr(path, real_path) -> Path:
    """The real fixed-slit wavecorr with a ``MOS`` aperture added (S200A1's offsets, the shutter's width)."""
    import asdf

    with asdf.open(real_path, lazy_load=False, memmap=False) as af:
        tree = {k: v for k, v in af.tree.items() if k not in ("asdf_library", "history")}
        aps = [dict(a) for a in tree["apertures"]]
        for a in aps:
            a["variance"] = np.asarray(a["variance"])
        base = next(a for a in aps if a["aperture_name"] == "S200A1")
        mos = dict(base)
        mos["aperture_name"] = "MOS"
        mos["zero_point_offset"] = base["zero_point_offset"].copy()
        mos["width"] = 7.8e-05
        tree["apertures"] = aps + [mos]
        tree["meta"] = dict(tree["meta"])
        tree["meta"]["exposure"] = {"p_exptype": "NRS_FIXEDSLIT|NRS_BRIGHTOBJ|NRS_MSASPEC|", "type": "NRS_FIXEDSLIT"}
        tree["meta"]["author"] = AUTHOR
        tree["meta"]["description"] = "NIRSpec wavelength zero point (the real FS file plus a MOS aperture)"
        path = Path(path)
        asdf.AsdfFile(tree).write_to(path)
    return path


def write_mos_photom(path, real_fs_path) -> Path:
    """The MSA photom (NrsMosPhotomModel): one row per filter and grating, from the fixed-slit rows' wavelengths."""
    from astropy.io import fits

    with fits.open(real_fs_path) as real:
        h = real[0].header.copy()
        fs = real["PHOTOM"].data
        seen, rows = set(), []
        for row in fs:
            key = (str(row["filter"]), str(row["grating"]))
            if key in seen:
                continue
            seen.add(key)
            n = int(row["nelem"])
            rr = np.zeros_like(row["relresponse"])
            rr[:n] = response(np.asarray(row["wavelength"][:n], float), key[1])
            rows.append((key[0], key[1], 1.8e-12 * (1.0 + 0.05 * len(rows)), 0.0, n, row["wavelength"], rr,
                         np.zeros_like(rr)))
        n = fs["wavelength"].shape[1]
    dtype = [("filter", "S12"), ("grating", "S15"), ("photmj", ">f4"), ("uncertainty", ">f4"), ("nelem", ">i2"),
             ("wavelength", ">f4", (n,)), ("relresponse", ">f4", (n,)), ("reluncertainty", ">f4", (n,))]
    h["DATAMODL"], h["EXP_TYPE"], h["P_EXP_TY"] = "NrsMosPhotomModel", "NRS_MSASPEC", "NRS_MSASPEC|"
    h["AUTHOR"], h["PEDIGREE"] = AUTHOR, PEDIGREE
    h["DESCRIP"] = "NIRSpec MSA photom (webbflow synthetic)"
    table = fits.BinTableHDU(np.array(rows, dtype=dtype), name="PHOTOM")
    return _write(path, [fits.PrimaryHDU(header=h), table])


def write_mos_area(path) -> Path:
    """The MSA area (NirspecMosAreaModel): every shutter of the four quadrants (365 x 171), its area on the sky."""
    from astropy.io import fits

    q, x, y = np.meshgrid(np.arange(1, 5), np.arange(1, 366), np.arange(1, 172), indexing="ij")
    area = SHUTTER[0] * SHUTTER[1] * (1.0 + 0.002 * np.sin(x / 40.0) * np.cos(y / 30.0))
    table = np.zeros(q.size, dtype=[("quadrant", ">i2"), ("shutter_x", ">i2"), ("shutter_y", ">i2"), ("pixarea", ">f4")])
    table["quadrant"], table["shutter_x"], table["shutter_y"] = q.ravel(), x.ravel(), y.ravel()
    table["pixarea"] = area.ravel()
    h = _primary("AREA", "NirspecMosAreaModel", "NRS_MSASPEC", "NRS_MSASPEC|", "NIRSpec MSA shutter areas "
                 "(webbflow synthetic)", detector="N/A")
    return _write(path, [fits.PrimaryHDU(header=h), fits.BinTableHDU(table, name="AREA")])


def msaoper_reference(failed_open, failed_closed=()) -> dict:
    """An ``msaoper`` reference tree in the form CRDS delivers it (jwst_nirspec_msaoper_*.json): the
    header fields, then a ``msaoper`` list with one entry per inoperable shutter (quadrant ``Q``, column
    ``x`` 1..365, row ``y`` 1..171; ``state``, ``TA state``, ``Internal state``, ``Vignetted``).
    ``failed_open``: (Q, x, y) of shutters stuck open (``state`` "open"; the last of them open only in
    its ``Internal state``, as some flight entries are); ``failed_closed`` those stuck closed."""
    entries = []
    for i, (q, x, y) in enumerate(failed_open):
        internal_only = i == len(failed_open) - 1 and len(failed_open) > 1
        entries.append({"Q": int(q), "x": int(x), "y": int(y), "state": "closed" if internal_only else "open",
                        "TA state": "closed" if internal_only else "open",
                        "Internal state": "open", "Vignetted": "no"})
    for q, x, y in failed_closed:
        entries.append({"Q": int(q), "x": int(x), "y": int(y), "state": "closed", "TA state": "closed",
                        "Internal state": "normal", "Vignetted": "no"})
    return {
        "title": "NIRSpec MSA operability", "reftype": "MSAOPER", "pedigree": PEDIGREE,
        "description": "Synthetic MSA shutter operability: a few failed-open and failed-closed shutters",
        "author": AUTHOR, "useafter": USEAFTER, "telescope": "JWST", "instrument": "NIRSPEC",
        "exp_type": "NRS_MSASPEC|NRS_IFU|NRS_AUTOFLAT|NRS_AUTOWAVE|NRS_LAMP",
        "msaoper": entries,
        "history": "Made by webbflow's synthetic reference builder",
    }


def write_msaoper(path, failed_open, failed_closed=()) -> Path:
    """Write :func:`msaoper_reference` as JSON (the file CRDS's msaoper rules select)."""
    import json
    import os

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(msaoper_reference(failed_open, failed_closed), indent=1))
    os.replace(tmp, path)
    return path
