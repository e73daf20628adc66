"""An NIRSpec MSA (NRS_MSASPEC) exposure for the MOS steps' tests (tests/test_nirspec_msa.py).

Built from the same pieces as tests/test_nirspec_wcs.py: the PRISM/CLEAR exposure with the
pointing of the full MSA aperture, and the real SMACS 0723 MSA metadata file (configuration 1,
trimmed to every 12th slitlet, written beside the exposure where MSAMETFL finds it).  On NRS2 the
trimmed configuration has four slitlets (14, 26, 2, 38), all with sources (none is a background
slitlet by jwst's rule, a source name with BKG or BACKGROUND).

The rate is a full NRS2 frame with a sky level, noise, variances and a flagged pixel; its imprint
(leakcal) exposure, the same configuration seen with the MSA closed to the sky, is a faint
structured pattern with its own DQ flags, at the same dither point.  The references are the real
optical chain, webbflow's synthetic msa reference and a synthetic msaoper with stuck-open shutters
placed near the slitlets so that their light lands on NRS2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from test_nirspec_wcs import JWST_NA, REAL_REFS, _msa_exposure, _rate

ROOT = "jw02736007001_03101_00001_nrs2"
IMPRINT_ROOT = "jw02736007001_03103_00001_nrs2"
DETECTOR = "NRS2"
# (quadrant, x, y) of the stuck-open shutters, each a few shutters from a slitlet of the trimmed
# configuration on NRS2 (the last open only in its internal state); their light lands on NRS2
FAILED_OPEN = ((1, 169, 93), (2, 72, 51), (1, 291, 170))
FAILED_CLOSED = ((4, 10, 10),)


def references(folder: Path) -> dict[str, str]:
    """The WCS references (real optical chain, synthetic msa) and the synthetic msaoper."""
    from webbflow.refs.synthetic_nirspec_optics import write_msa_reference
    from webbflow.refs.synthetic_nirspec_spec2 import write_msaoper

    out = {k: str(v) for k, v in REAL_REFS.items()}
    out["msa"] = str(write_msa_reference(folder / "webbflow_nirspec_msa.asdf"))
    out["msaoper"] = str(write_msaoper(folder / "webbflow_nirspec_msaoper.json", FAILED_OPEN, FAILED_CLOSED))
    return out


def wcs_overrides(refs: dict) -> dict:
    """assign_wcs's overrides for jwst (the optical chain and msa; the other WCS reftypes N/A)."""
    out = {f"override_{k}": refs[k] for k in (*REAL_REFS, "msa")}
    out.update({f"override_{k}": "N/A" for k in JWST_NA})
    return out


def msa_rate(folder: Path, *, imprint: bool = False, seed: int = 19):
    """The MSA rate (or its imprint exposure) written in ``folder``; returns its path."""
    m = _rate("NRS_FIXEDSLIT", DETECTOR)
    _msa_exposure(m, folder)
    rng = np.random.default_rng(seed + imprint)
    shape = (2048, 2048)
    if imprint:
        # the MSA's imprint: a faint grid of the shutter bars, along rows and columns
        yy, xx = np.mgrid[0:2048, 0:2048]
        data = (0.05 + 0.02 * np.cos(2 * np.pi * yy / 37.0) * np.cos(2 * np.pi * xx / 53.0)).astype(np.float32)
        data += rng.normal(0.0, 0.005, shape).astype(np.float32)
    else:
        data = rng.normal(1.0, 0.1, shape).astype(np.float32)
    m.data = data
    m.err = np.full(shape, 0.1, np.float32)
    m.dq = np.zeros(shape, np.uint32)
    m.var_poisson = np.full(shape, 0.006, np.float32)
    m.var_rnoise = np.full(shape, 0.004, np.float32)
    if imprint:
        m.dq[100:103, 500] = 1  # flags of the imprint exposure's own
    else:
        m.dq[1000, 1000] = 4
    m.meta.bunit_data = m.meta.bunit_err = "DN/s"
    m.meta.observation.observation_number = "007"
    m.meta.observation.bkgdtarg = False
    m.meta.dither.position_number = 1
    ex = m.meta.exposure
    ex.exposure_time = ex.effective_exposure_time = ex.measurement_time = ex.duration = 100.0
    ex.elapsed_exposure_time, ex.integration_time, ex.frame_time, ex.group_time = 100.0, 100.0, 0.9, 0.9
    m.meta.target.source_type = None
    m.meta.date = "2026-01-01T00:00:00.000"
    root = IMPRINT_ROOT if imprint else ROOT
    m.meta.filename = f"{root}_rate.fits"
    return Path(m.save(folder / f"{root}_rate.fits"))
