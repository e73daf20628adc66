"""Builders for the NIRSpec spec3 parity test (tests/test_nirspec_spec3.py).

A nodded NIRSpec fixed-slit observation built from the real optical references: PRISM/CLEAR on
NRS1, read out in the ALLSLITS subarray (every fixed slit of NRS1 on it), the primary slit S200A1,
a point source nodded along the slit (two positions, YOFFSET -0.5 and +0.5 arcsec).  Each rate
carries noise around a constant level; the first nod has a cosmic ray in each slit's spectrum, which
outlier_detection must flag.

The rates go through jwst's Spec2Pipeline (flat_field skipped: the real f-flat is a DUMMY of ones
and the s/d flats are not here; barshadow is not a fixed-slit step), and the spec3 association of
their cals is the one webbflow's association generator makes from the pool of the two exposures
(jwst's asn_generate makes the same from that pool: Asn_Lv3NRSFSS, product
``jw01234-o001_t001-{source_id}_nirspec_clear-prism-{slit_name}-allslits``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from nirspec_real import OPTICS, REAL, WCS_NA

PROGRAM, OBS = "01234", "001"
NODS = (-0.5, 0.5)  # YOFFSET of each nod (arcsec along the slit): the 2-POINT-NOD pattern
# (slit, row, column) of the cosmic rays put in the first nod, in the ALLSLITS subarray, one in each
# slit's spectrum (the cutouts: S200A1 rows 161-199, S200A2 125-164, S400A1 84-127, S1600A1 64-85)
HITS = (("S200A1", 180, 1300), ("S200A2", 145, 1100), ("S400A1", 106, 1240), ("S1600A1", 75, 1270))


def exposure_root(nod: int) -> str:
    return f"jw{PROGRAM}{OBS}001_03101_{nod:05d}_nrs1"


def write_references(folder: Path) -> dict[str, str]:
    """The references spec2 takes beyond CRDS: the real optics, webbflow's msa, the real wavecorr and
    area, the synthetic fixed-slit pathloss and a varying photom in the real file's form."""
    from webbflow.refs import synthetic_nirspec_spec2 as syn
    from webbflow.refs.synthetic_nirspec_optics import write_msa_reference

    folder.mkdir(parents=True, exist_ok=True)
    out = {k: str(v) for k, v in OPTICS.items()}
    out["msa"] = str(write_msa_reference(folder / "webbflow_nirspec_msa.asdf"))
    out["wavecorr"] = str(REAL / "jwst_nirspec_wavecorr_0001.asdf")
    out["area"] = str(REAL / "jwst_nirspec_area_0020.fits")
    out["pathloss"] = str(syn.write_pathloss(folder / "webbflow_nirspec_pathloss_fs.fits", "FS"))
    out["photom"] = str(syn.write_fs_photom(folder / "webbflow_nirspec_photom_fs.fits", REAL / "jwst_nirspec_photom_0014.fits"))
    return out


def fs_rate(nod: int, yoffset: float):
    """One nod of the fixed-slit observation (``nod`` counts from 1): a rate in the ALLSLITS subarray."""
    import pysiaf

    from webbflow import models

    shape = (256, 2048)
    rng = np.random.default_rng(1900 + nod)
    m = models.ImageModel(data=rng.normal(10.0, 1.0, shape).astype(np.float32))
    m.err = np.full(shape, 1.0, np.float32)
    m.dq = np.zeros(shape, np.uint32)
    m.var_poisson = np.full(shape, 0.6, np.float32)
    m.var_rnoise = np.full(shape, 0.4, np.float32)
    if nod == 1:
        for _slit, r, c in HITS:
            m.data[r, c] = 5000.0
    meta = m.meta
    meta.telescope, meta.bunit_data, meta.bunit_err = "JWST", "DN/s", "DN/s"
    ins = meta.instrument
    ins.name, ins.detector, ins.filter, ins.grating = "NIRSPEC", "NRS1", "CLEAR", "PRISM"
    ins.fixed_slit = "S200A1"
    ins.gwa_xtilt, ins.gwa_ytilt, ins.gwa_tilt = 0.3358, 0.0337, 37.1
    ex = meta.exposure
    ex.type, ex.readpatt = "NRS_FIXEDSLIT", "NRSRAPID"
    ex.nints, ex.ngroups, ex.nframes, ex.groupgap = 1, 3, 1, 0
    t0 = 59800.0 + 0.002 * (nod - 1)
    ex.start_time, ex.mid_time, ex.end_time = t0, t0 + 0.0005, t0 + 0.001
    ex.exposure_time = ex.effective_exposure_time = ex.measurement_time = ex.duration = 100.0
    ex.elapsed_exposure_time, ex.integration_time, ex.frame_time, ex.group_time = 100.0, 100.0, 0.9, 0.9
    s = meta.subarray
    s.name, s.xstart, s.ystart, s.xsize, s.ysize = "ALLSLITS", 1, 897, 2048, 256
    s.fastaxis, s.slowaxis = 2, 1
    meta.observation.date, meta.observation.time = "2022-08-01", "12:00:00.000"
    meta.target.source_type = "POINT"
    meta.dither.x_offset, meta.dither.y_offset = 0.31, 0.2 + yoffset
    meta.dither.position_number = nod
    ap = pysiaf.Siaf("NIRSpec")["NRS_S200A1_SLIT"]
    w = meta.wcsinfo
    w.v2_ref, w.v3_ref = float(ap.V2Ref), float(ap.V3Ref)
    w.v3yangle, w.vparity = float(ap.V3IdlYAngle), int(ap.VIdlParity)
    w.ra_ref, w.dec_ref, w.roll_ref = 53.16, -27.78, 47.3
    w.velosys = -12345.6
    meta.velocity_aberration.scale_factor = 1.00003
    meta.aperture.name = ap.AperName
    meta.date = "2026-01-01T00:00:00.000"
    return m


def write_rates(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(fs_rate(i, y).save(folder / f"{exposure_root(i)}_rate.fits")) for i, y in enumerate(NODS, start=1)]


def spec2_steps(refs: dict) -> dict:
    """jwst's Spec2Pipeline step parameters for the scene (the references above, N/A for the rest)."""
    steps = {"assign_wcs": {f"override_{k}": refs[k] for k in (*OPTICS, "msa")}}
    steps["assign_wcs"].update({f"override_{k}": "N/A" for k in WCS_NA})
    steps["flat_field"] = {"skip": True}
    steps["wavecorr"] = {"override_wavecorr": refs["wavecorr"]}
    steps["pathloss"] = {"override_pathloss": refs["pathloss"]}
    steps["photom"] = {"override_photom": refs["photom"], "override_area": refs["area"]}
    steps["resample_spec"] = {"skip": True}
    steps["extract_1d"] = {"skip": True}
    return steps


def jwst_spec2(rates: list[Path], refs: dict, out: Path, cache: Path) -> list[Path]:
    """jwst's Spec2Pipeline on each rate (its cal only, as the spec3 input), each slit given a zero
    VAR_FLAT."""
    from jwst.pipeline import Spec2Pipeline
    from parity import jwst_offline, quiet_jwst

    out.mkdir(parents=True, exist_ok=True)
    cals = []
    with jwst_offline(cache, "jwst_0541.pmap"), quiet_jwst(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for rate in rates:
            pipe = Spec2Pipeline(steps=spec2_steps(refs), output_dir=str(out), save_results=True)
            pipe.prefetch_references = False  # the 2019 rules know nothing of the newer reference types
            pipe.run(str(rate))
            cals.append(out / rate.name.replace("_rate.fits", "_cal.fits"))
        for cal in cals:
            # flat_field, skipped, would have given every slit its flat variance (zero for a flat without
            # errors); without it resample_spec's VAR_FLAT is all NaN and so is every extracted flux
            from stdatamodels.jwst import datamodels as dm

            with dm.open(cal) as m:
                for slit in m.slits:
                    slit.var_flat = np.zeros_like(slit.data)
                m.save(cal)
    return cals


POOL_COLUMNS = ("FILENAME|OBS_ID|PROGRAM|OBS_NUM|VISIT|VISIT_ID|VISITGRP|VISITYPE|SEQ_ID|ACT_ID|EXPOSURE|EXP_TYPE|"
                "NEXPOSUR|EXPCOUNT|INSTRUME|DETECTOR|CHANNEL|TARGETID|TARGPROP|TARGNAME|TARGTYPE|TEMPLATE|PNTGTYPE|"
                "PNTG_SEQ|TARGORDN|EXPSPCIN|DITHPTIN|MOSTILNO|MODULE|FILTER|PUPIL|DITHERID|PATTTYPE|PATTSTRT|NUMDTHPT|"
                "PATTSIZE|SUBPXPNS|PATT_NUM|SUBPXNUM|SUBPIXEL|APERNAME|SDP_VER|SUBARRAY|GRATING|FXD_SLIT|BAND|GWA_XTIL|"
                "GWA_YTIL|ASN_CANDIDATE|EXPOSERR|IS_PSF|IS_IMPRT|BKGDTARG|TSOVISIT|MSAMETFL|SPAT_NUM|SPEC_NUM").split("|")


def write_pool(path: Path, rates: list[Path]) -> Path:
    """The association pool of the nodded exposures, in the archive's columns (as the fixed-slit nod
    pools in ../shared/data/associations/pools have them)."""
    n = len(rates)
    lines = ["|".join(POOL_COLUMNS)]
    for i, r in enumerate(rates, start=1):
        row = dict.fromkeys(POOL_COLUMNS, "NULL")
        row.update({
            "FILENAME": r.name.replace("_rate.fits", "_uncal.fits"), "OBS_ID": f"V{PROGRAM}{OBS}001P0000000003101",
            "PROGRAM": PROGRAM, "OBS_NUM": OBS, "VISIT": "1", "VISIT_ID": f"{PROGRAM}{OBS}001", "VISITGRP": "3",
            "VISITYPE": "PRIME_TARGETED_FIXED", "SEQ_ID": "1", "ACT_ID": "01", "EXPOSURE": str(i),
            "EXP_TYPE": "NRS_FIXEDSLIT", "NEXPOSUR": str(n), "EXPCOUNT": str(i), "INSTRUME": "NIRSPEC",
            "DETECTOR": "NRS1", "TARGETID": "1", "TARGPROP": "TARGET-1", "TEMPLATE": "NIRSpec Fixed-slit Spectroscopy",
            "PNTGTYPE": "SCIENCE", "PNTG_SEQ": "1", "TARGORDN": "1", "EXPSPCIN": str(i), "DITHPTIN": "1",
            "MOSTILNO": "1", "FILTER": "CLEAR", "PATTTYPE": f"{n}-POINT-NOD", "PATTSTRT": "1", "NUMDTHPT": str(n),
            "PATTSIZE": "SLIT", "SUBPXPNS": "1", "PATT_NUM": str(i), "SUBPXNUM": "1", "APERNAME": "NRS_S200A1_SLIT",
            "SDP_VER": "2022_1", "SUBARRAY": "ALLSLITS", "GRATING": "PRISM", "FXD_SLIT": "S200A1",
            "GWA_XTIL": "0.3358", "GWA_YTIL": "0.0337", "ASN_CANDIDATE": f"[('o{OBS}', 'observation')]",
            "IS_PSF": "F", "IS_IMPRT": "F", "BKGDTARG": "F", "TSOVISIT": "F",
        })
        lines.append("|".join(row[c] for c in POOL_COLUMNS))
    path.write_text("\n".join(lines) + "\n")
    return path


def spec3_associations(folder: Path, pool: Path, jwst: bool = False) -> list[Path]:
    """The spec3 associations of the pool, by webbflow's generator or (``jwst``) jwst's asn_generate."""
    out = folder / ("jwst-asn" if jwst else "asn")
    out.mkdir(parents=True, exist_ok=True)
    if jwst:
        from jwst.associations.main import Main

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Main.cli(["-p", str(out), "--version-id", "20260101t000000", "--no-merge", str(pool)])
    else:
        from webbflow.flows.asn.flow import generate_files

        generate_files(pool, out, version_id="20260101t000000")
    return sorted(p for p in out.glob("*_asn.json") if json.loads(p.read_text())["asn_type"] == "spec3")
