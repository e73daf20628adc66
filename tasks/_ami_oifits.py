"""The AMI products from the fits of an exposure's integrations: OIFITS 2 tables (averaged or per
integration) and the LG fit images, laid out as jwst 3.0 writes them."""

from __future__ import annotations

import warnings

import numpy as np
from astropy.io import fits

from . import _ami_lg as lg

NHOLES = 7


def _dtypes(n: int | None):
    """Column layouts of the OIFITS tables; ``n`` integrations per row (None: one averaged value)."""
    v = ("<f8",) if n is None else ("<f8", (n,))
    head = [("TARGET_ID", "<i2"), ("TIME", "<f8"), ("MJD", "<f8"), ("INT_TIME", "<f8")]
    return {
        "array": [("TEL_NAME", "S16"), ("STA_NAME", "S16"), ("STA_INDEX", "<i2"), ("DIAMETER", "<f4"),
                  ("STAXYZ", "<f8", (3,)), ("FOV", "<f8"), ("FOVTYPE", "S6"), ("CTRS_EQT", "<f8", (2,)),
                  ("PISTONS", *v), ("PIST_ERR", *v)],
        "target": [("TARGET_ID", "<i2"), ("TARGET", "S16"), ("RAEP0", "<f8"), ("DECEP0", "<f8"), ("EQUINOX", "<f4"),
                   ("RA_ERR", "<f8"), ("DEC_ERR", "<f8"), ("SYSVEL", "<f8"), ("VELTYP", "S8"), ("VELDEF", "S8"),
                   ("PMRA", "<f8"), ("PMDEC", "<f8"), ("PMRA_ERR", "<f8"), ("PMDEC_ERR", "<f8"),
                   ("PARALLAX", "<f4"), ("PARA_ERR", "<f4"), ("SPECTYP", "S16")],
        "t3": head + [("T3AMP", *v), ("T3AMPERR", *v), ("T3PHI", *v), ("T3PHIERR", *v), ("U1COORD", "<f8"),
                      ("V1COORD", "<f8"), ("U2COORD", "<f8"), ("V2COORD", "<f8"), ("STA_INDEX", "<i2", (3,)),
                      ("FLAG", "?")],
        "vis": head + [("VISAMP", *v), ("VISAMPERR", *v), ("VISPHI", *v), ("VISPHIERR", *v), ("UCOORD", "<f8"),
                       ("VCOORD", "<f8"), ("STA_INDEX", "<i2", (2,)), ("FLAG", "?")],
        "vis2": head + [("VIS2DATA", *v), ("VIS2ERR", *v), ("UCOORD", "<f8"), ("VCOORD", "<f8"),
                        ("STA_INDEX", "<i2", (2,)), ("FLAG", "?")],
        "q4": head + [("Q4AMP", *v), ("Q4AMPERR", *v), ("Q4PHI", *v), ("Q4PHIERR", *v)]
        + [(f"{a}{k}COORD", "<f8") for k in range(1, 5) for a in "UV"] + [("STA_INDEX", "<i2", (4,)), ("FLAG", "?")],
        "wavelength": [("EFF_WAVE", "<f4"), ("EFF_BAND", "<f4")],
    }


def _cov_errors(r, theta, n):
    """Errors along and across the mean direction of the points ``r exp(i theta)`` (one column per
    baseline, triple or quad): the square roots of the rotated covariance's diagonal over sqrt(n)."""
    e0, e1 = [], []
    for k in range(r.shape[1]):
        x, y = r[:, k] * np.cos(theta[:, k]), r[:, k] * np.sin(theta[:, k])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            cov = np.cov(x, y)
        a = np.mean(theta[:, k])
        c, s = np.cos(a), np.sin(a)
        rot = [[c, -s], [s, c]]
        cov = np.linalg.multi_dot([np.transpose(rot), cov, rot])
        e0.append(cov[0, 0])
        e1.append(cov[1, 1])
    return np.sqrt(np.array(e0)) / np.sqrt(n), np.sqrt(np.array(e1)) / np.sqrt(n)


def _clipped(a, which):
    from astropy.stats import sigma_clipped_stats

    mean, median, std = sigma_clipped_stats(a, axis=0)
    return (mean if which == "mean" else median), std


def observables(fits_, method):
    """The tables' observables (angles in degrees) from the integrations' fits."""
    n = len(fits_)
    amp = np.array([f.amp for f in fits_])
    pha = np.array([f.phase for f in fits_])
    cps = np.array([f.cps for f in fits_])
    t3a = np.array([f.t3amp for f in fits_])
    cas = np.array([f.cas for f in fits_])
    q4 = np.array([f.q4 for f in fits_])
    pis = np.array([f.pistons for f in fits_])
    cps = cps - np.where(cps >= 6, 2 * np.pi, np.where(cps <= -6, -2 * np.pi, 0.0))
    if method == "multi":
        z = np.zeros
        o = dict(vis2=(amp ** 2).T, visamp=amp.T, visphi=pha.T, cp=cps.T, t3amp=t3a.T, camp=cas.T, q4phi=q4.T, pist=pis.T)
        o.update({f"e_{k}": z(v.shape) for k, v in list(o.items())})
    else:
        avg_fa, _ = _clipped(amp, method)
        avg_fp, _ = _clipped(pha, method)
        avg_sqv, _ = _clipped(amp ** 2, method)
        avg_pist, err_pist = _clipped(pis, method)
        err_fa, err_fp = _cov_errors(amp, pha, n)
        err_t3, err_cp = _cov_errors(t3a, cps, n)
        err_ca, err_q4 = _cov_errors(cas, q4, n)
        o = dict(vis2=avg_sqv, e_vis2=2 * avg_fa * err_fa / np.sqrt(n), visamp=avg_fa, e_visamp=err_fa,
                 visphi=avg_fp, e_visphi=err_fp, cp=lg.closure_phases(avg_fp, NHOLES), e_cp=err_cp,
                 t3amp=lg.triple_amplitudes(avg_fa, NHOLES), e_t3amp=err_t3,
                 camp=lg.closure_amplitudes(avg_fa, NHOLES), e_camp=err_ca,
                 q4phi=lg.quad_phases(avg_fp, NHOLES), e_q4phi=err_q4, pist=avg_pist, e_pist=err_pist / np.sqrt(n))
    for k in ("visphi", "e_visphi", "cp", "e_cp", "q4phi", "e_q4phi", "pist", "e_pist"):
        o[k] = np.rad2deg(o[k])
    return o


def _primary_from(model, cls):
    out = cls()
    out.meta = model.meta.model_copy(deep=True)
    out.meta.model_type = cls.__name__
    h = model._headers.get("PRIMARY")
    out._headers = {"PRIMARY": h.copy() if h is not None else fits.Header()}
    return out


def oifits_keywords(oim) -> None:
    """The OIFITS keywords of every table and of the primary header (as stdatamodels adds them on save)."""
    m = oim.meta
    arrname = oim.keyword("ARRNAME", "OI_ARRAY", "jwst_ami")
    oim.set_keyword("INSMODE", m.instrument.pupil)
    oim.set_keyword("CONTENT", "OIFITS2")
    oim.set_keyword("OBJECT", m.target.proposer_name or m.target.catalog_name)
    oim.set_keyword("OBSERVER", m.program.pi_name)
    oim.set_keyword("ARRNAME", arrname, "OI_ARRAY")
    for k, v in (("FRAME", "SKY"), ("OI_REVN", 2), ("ARRAYX", 0.0), ("ARRAYY", 0.0), ("ARRAYZ", 0.0)):
        oim.set_keyword(k, oim.keyword(k, "OI_ARRAY", v) if k != "OI_REVN" else v, "OI_ARRAY")
    oim.set_keyword("OI_REVN", 2, "OI_TARGET")
    for ext in ("OI_T3", "OI_VIS", "OI_VIS2", "OI_Q4"):
        oim.set_keyword("ARRNAME", arrname, ext)
        oim.set_keyword("DATE-OBS", m.observation.date, ext)
        oim.set_keyword("INSNAME", m.instrument.name, ext)
        oim.set_keyword("OI_REVN", 2, ext)
    oim.set_keyword("INSNAME", m.instrument.name, "OI_WAVELENGTH")
    oim.set_keyword("OI_REVN", 2, "OI_WAVELENGTH")


def _staindex(rows):
    rows = np.asarray(rows, dtype=int)
    return rows + (1 if rows.min() == 0 else 0)


def build_oifits(fits_, ctx, method):
    """An AmiOIModel of the sigma-clipped ``mean`` observables, or of every integration (``multi``)."""
    from astropy.time import Time

    from ..models.ami import AmiOIModel

    model = ctx["model"]
    n = len(fits_)
    o = observables(fits_, method)
    dts = _dtypes(n if method == "multi" else None)
    eqt = ctx["eqt"]
    pairs = lg.baseline_pairs(NHOLES)
    triples = [(i, j, k) for i in range(NHOLES) for j in range(i + 1, NHOLES) for k in range(j + 1, NHOLES)]
    quads = [(i, j, k, q) for i, j, k in triples for q in range(k + 1, NHOLES)]
    bls = np.array([eqt[i] - eqt[j] for i, j in pairs])
    tuv = np.array([(eqt[i] - eqt[j], eqt[j] - eqt[k]) for i, j, k in triples])
    quv = np.array([(eqt[i] - eqt[j], eqt[j] - eqt[k], eqt[k] - eqt[q]) for i, j, k, q in quads])

    hdr = model._headers.get("PRIMARY", fits.Header())
    start = str(model.meta.visit.start_time).replace(" ", "T")
    mjd = Time(f"{start[:4]}-{start[5:7]}-{start[8:10]}", format="fits").mjd
    name = model.meta.target.catalog_name
    if name == "UNKNOWN":
        name = model.meta.target.proposer_name
    common = dict(TARGET_ID=1, TIME=0, MJD=mjd, INT_TIME=ctx["itime"])

    oim = _primary_from(model, AmiOIModel)
    oim.meta.origin = model.meta.origin or "STScI"
    oim.meta.telescope = model.meta.telescope or "JWST"
    oim.meta.instrument.name = model.meta.instrument.name or "NIRISS"
    w = model.meta.wcsinfo
    for k, v in (("ROLL_REF", w.roll_ref), ("V3I_YANG", w.v3yangle), ("VPARITY", w.vparity)):
        oim.set_keyword(k, v)

    t = np.zeros(NHOLES, dtype=dts["array"])
    t["TEL_NAME"] = t["STA_NAME"] = [f"A{k}" for k in range(1, NHOLES + 1)]
    t["STA_INDEX"] = np.arange(NHOLES) + 1
    t["STAXYZ"] = [[x, y, 0] for x, y in ctx["ctrs"]]
    t["FOV"] = ctx["pxsc_mas"] / 1000.0 * ctx["isz"]
    t["FOVTYPE"] = "RADIUS"
    t["CTRS_EQT"] = eqt
    t["PISTONS"], t["PIST_ERR"] = o["pist"], o["e_pist"]
    oim.array = t

    t = np.zeros(1, dtype=dts["target"])
    t["TARGET_ID"], t["TARGET"] = 1, str(name).replace("-", " ")
    t["RAEP0"], t["DECEP0"], t["EQUINOX"] = model.meta.target.ra, model.meta.target.dec, 2000
    t["RA_ERR"], t["DEC_ERR"] = hdr.get("TARGURA"), hdr.get("TARGUDEC")
    t["VELTYP"], t["VELDEF"], t["SPECTYP"] = "UNKNOWN", "OPTICAL", "UNKNOWN"
    t["PMRA"], t["PMDEC"] = hdr.get("MU_RA"), hdr.get("MU_DEC")
    oim.target = t

    t = np.zeros(len(triples), dtype=dts["t3"])
    for k, v in common.items():
        t[k] = v
    t["T3AMP"], t["T3AMPERR"], t["T3PHI"], t["T3PHIERR"] = o["t3amp"], o["e_t3amp"], o["cp"], o["e_cp"]
    t["U1COORD"], t["V1COORD"], t["U2COORD"], t["V2COORD"] = tuv[:, 0, 1], tuv[:, 0, 0], tuv[:, 1, 1], tuv[:, 1, 0]
    t["STA_INDEX"] = _staindex(triples)
    oim.t3 = t

    t = np.zeros(len(pairs), dtype=dts["vis"])
    for k, v in common.items():
        t[k] = v
    t["VISAMP"], t["VISAMPERR"], t["VISPHI"], t["VISPHIERR"] = o["visamp"], o["e_visamp"], o["visphi"], o["e_visphi"]
    t["UCOORD"], t["VCOORD"] = bls[:, 1], bls[:, 0]
    t["STA_INDEX"] = _staindex(pairs)
    oim.vis = t

    t = np.zeros(len(pairs), dtype=dts["vis2"])
    for k, v in common.items():
        t[k] = v
    t["VIS2DATA"], t["VIS2ERR"] = o["vis2"], o["e_vis2"]
    t["UCOORD"], t["VCOORD"] = bls[:, 1], bls[:, 0]
    t["STA_INDEX"] = _staindex(pairs)
    oim.vis2 = t

    t = np.zeros(len(quads), dtype=dts["q4"])
    for k, v in common.items():
        t[k] = v
    t["Q4AMP"], t["Q4AMPERR"], t["Q4PHI"], t["Q4PHIERR"] = o["camp"], o["e_camp"], o["q4phi"], o["e_q4phi"]
    for k in range(3):
        t[f"U{k + 1}COORD"], t[f"V{k + 1}COORD"] = quv[:, k, 1], quv[:, k, 0]
    t["U4COORD"] = -(quv[:, 1, 0] + quv[:, 2, 0])
    t["V4COORD"] = -(quv[:, 1, 1] + quv[:, 2, 1])
    t["STA_INDEX"] = _staindex(quads)
    oim.q4 = t

    t = np.zeros(1, dtype=dts["wavelength"])
    t["EFF_WAVE"], t["EFF_BAND"] = ctx["lam"], ctx["lam"] * ctx["beta"]
    oim.wavelength = t
    oim.set_keyword("ARRNAME", "jwst_ami", "OI_ARRAY")
    oifits_keywords(oim)
    return oim


def build_lgfit(fits_, model):
    """The AmiLgFitModel: centred data, model and residual images (and each divided by the data's
    peak) and the 44 normalised coefficients of every integration."""
    from ..models.ami import AmiLgFitModel

    out = _primary_from(model, AmiLgFitModel)
    ctrd = np.array([f.image for f in fits_], dtype=float)
    fit = np.array([f.fit_image for f in fits_])
    res = np.array([f.residual for f in fits_])
    peak = np.array([f.image.max() for f in fits_])[:, None, None]
    out.centered_image, out.norm_centered_image = ctrd, ctrd / peak
    out.fit_image, out.norm_fit_image = fit, fit / peak
    out.resid_image, out.norm_resid_image = res, res / peak
    solns = np.zeros(len(fits_), dtype=[("coeffs", "<f8", (len(fits_[0].soln),))])
    solns["coeffs"] = [f.soln for f in fits_]
    out.solns_table = solns
    return out
