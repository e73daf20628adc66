"""Blending the metadata of a Stage 3 product's input exposures, as jwst's model blender does.

The combined product (image3's i2d) starts from the first input's metadata; a few keywords
are combined over all inputs by a rule (earliest DATE-BEG, latest DATE-END, mean EXPMID,
'MULTIPLE' for differing FILTERs, ...), and an ``HDRTAB`` table gets one row per input with
the value of each keyword stdatamodels' image schema marks for that table (a column only when
some input has the keyword).  The keyword lists below are that schema's, in its order.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# (keyword, hdu) of the HDRTAB columns, in the schema's order (a bare keyword is in the primary header)
_TABLE = (
    "DATE", "ORIGIN", "TIMESYS", "FILENAME", "SDP_VER", "PRD_VER", "OSS_VER", "GSC_VER", "CAL_VER",
    "CAL_VCS", "DATAMODL", "TELESCOP", "HGA_MOVE", "HGA_STRT", "HGA_STOP", "PWFSEET", "NWFSEST", "ASNPOOL",
    "ASNTABLE", "TITLE", "PI_NAME", "CATEGORY", "SUBCAT", "SCICAT", "CONT_ID", "DATE-OBS", "TIME-OBS",
    "DATE-BEG", "DATE-END", "OBS_ID", "VISIT_ID", "PROGRAM", "OBSERVTN", "VISIT", "VISITGRP", "SEQ_ID",
    "ACT_ID", "EXPOSURE", "BKGDTARG", "TEMPLATE", "OBSLABEL", "ENG_QUAL", "ENGQLPTG", "VISITYPE", "VSTSTART",
    "VISITSTA", "NEXPOSUR", "INTARGET", "TARGOOPP", "TSOVISIT", "EXP_ONLY", "TARGPROP", "TARGNAME",
    "TARGTYPE", "TARG_RA", "TARG_DEC", "TARGURA", "TARGUDEC", "MU_RA", "MU_DEC", "MU_EPOCH", "PROP_RA",
    "PROP_DEC", "SRCTYAPT", "INSTRUME", "DETECTOR", "MODULE", "CHANNEL", "FILTER", "FWPOSOFF", "FWPOSTOL",
    "PUPIL", "PILIN", "PWPOSOFF", "PWPOSTOL", "GRATING", "BAND", "FXD_SLIT", "FOCUSPOS", "PREIMAGE",
    "CCCSTATE", "CORONMSK", "MSASTATE", "MSAMETFL", "MSAMETID", "MSACONID", "LAMP", "OPMODE", "GWA_XTIL",
    "GWA_YTIL", "GWA_XP_V", "GWA_YP_V", "GWA_PXAV", "GWA_PYAV", "GWA_TILT", "FWCPOS", "PWCPOS", "EXPCOUNT",
    "EXPRIPAR", "EXP_TYPE", "EXPSTART", ("MJD-BEG", "SCI"), "EXPMID", ("MJD-AVG", "SCI"), "EXPEND",
    ("MJD-END", "SCI"), ("TDB-BEG", "SCI"), ("TDB-MID", "SCI"), ("TDB-END", "SCI"), "READPATT", "HYBRIDFF",
    "EXSEGNUM", "EXSEGTOT", "NOUTPUTS", "NINTS", "INTSTART", "INTEND", "NGROUPS", "NFRAMES", "MIRNGRPS",
    "MIRNFRMS", "FRMDIVSR", "GROUPGAP", "DRPFRMS1", "DRPFRMS3", "NSAMPLES", "TSAMPLE", "TFRAME", "TGROUP",
    "EFFINTTM", "EFFEXPTM", ("XPOSURE", "SCI"), "TMEASURE", "DURATION", ("TELAPSE", "SCI"), "NRSTSTRT",
    "NRESETS", "ZEROFRAM", "DATAPROB", "SCA_NUM", "DATAMODE", "NRS_NORM", "NRS_REF", "SCTARATE", "GAINFACT",
    "IS_IMPRT", "IS_PSF", "SELFREF", "SUBARRAY", "SUB_SHRT", "SUB_LONG", "SUBSTRT1", "SUBSTRT2", "SUBSIZE1",
    "SUBSIZE2", "FASTAXIS", "SLOWAXIS", "DETXCOR", "DETYCOR", "DETXSIZ", "DETYSIZ", "MSTR_RD1", "MSTR_SK1",
    "MSTR_RD2", "MSTR_SK2", "MSTR_RPT", "MSTR_ILV", "SSTR_STP", "SSTR_NST", "PATTTYPE", "PRIDTYPE",
    "PRIDTPTS", "PATT_NUM", "PATTSTRT", "NUMDTHPT", "PATTNPTS", "NRIMDTPT", "NOD_TYPE", "PATTSIZE",
    "SMGRDPAT", "SUBPXPTS", "SUBPXPAT", "SPEC_NUM", "SPECNSTP", "SPECSTEP", "SPCOFFST", "SPAT_NUM",
    "SPATNSTP", "SPATSTEP", "SPTOFFST", "XOFFSET", "YOFFSET", ("REFFRAME", "SCI"), ("EPH_TYPE", "SCI"),
    ("EPH_TIME", "SCI"), ("JWST_X", "SCI"), ("JWST_Y", "SCI"), ("JWST_Z", "SCI"), ("OBSGEO-X", "SCI"),
    ("OBSGEO-Y", "SCI"), ("OBSGEO-Z", "SCI"), ("JWST_DX", "SCI"), ("JWST_DY", "SCI"), ("JWST_DZ", "SCI"),
    ("OBSGEODX", "SCI"), ("OBSGEODY", "SCI"), ("OBSGEODZ", "SCI"), "APERNAME", "PPS_APER",
    ("PA_APER", "SCI"), "VA_RA", "VA_DEC", ("VA_SCALE", "SCI"), "BARTDELT", "BSTRTIME", "BENDTIME",
    "BMIDTIME", "HELIDELT", "HSTRTIME", "HENDTIME", "HMIDTIME", "FAM_LA1", "FASTEP1", "FAUNIT1", "FAPHASE1",
    "FA1VALUE", "FAM_LA2", "FASTEP2", "FAUNIT2", "FAPHASE2", "FA2VALUE", "FAM_LA3", "FASTEP3", "FAUNIT3",
    "FAPHASE3", "FA3VALUE", "RMA_POS", "FCSRLPOS", "GS_ORDER", "GSSTRTTM", "GSENDTIM", "GDSTARID", "GS_RA",
    "GS_DEC", "GS_URA", "GS_UDEC", "GS_MAG", "GS_UMAG", "GS_V3_PA", "PCS_MODE", "VISITEND", "FGS_APER",
    "GSIDL_X", "GSIDL_Y", "GSACSTAT", "GSCENTX", "GSCENTY", "GS_EPOCH", "GS_MURA", "GS_MUDEC", "GS_PARA",
    "CRDS_VER", "CRDS_CTX", "R_AREA", "R_BKG", "R_MSAOPE", "R_BARSHA", "R_CAMERA", "R_CHRCOR", "R_COLLIM",
    "R_SIRSKL", "R_CUBPAR", "R_DARK", "R_DISPER", "R_DISTOR", "R_MIREMI", "R_EXTR1D", "R_FILOFF", "R_FLAT",
    "R_DFLAT", "R_FFLAT", "R_SFLAT", "R_FORE", "R_FPA", "R_FRINGE", "R_FRIFRQ", "R_GAIN", "R_IFUFOR",
    "R_IFUPOS", "R_IFUSLI", "R_IPC", "R_LASTFR", "R_LINEAR", "R_MASK", "R_MSA", "R_MRSXAR", "R_MRSPT",
    "R_NRM", "R_OTE", "R_PSTSOS", "R_PTHLOS", "R_PERSAT", "R_PHOTOM", "R_PSFMAS", "R_READNO", "R_REFPIX",
    "R_REGION", "R_RESAMP", "R_RESOL", "R_RESET", "R_RSCD", "R_SATURA", "R_SPKERN", "R_SPPROF", "R_SPTRAC",
    "R_SPCWCS", "R_STRAY", "R_SUPERB", "R_THRPUT", "R_TRPDEN", "R_TRPPAR", "R_TSPHOT", "R_V2V3", "R_WAVCOR",
    "R_WAVRAN", "R_WAVMAP", "S_TRCMOD", "S_PSFALI", "S_AMIANA", "S_AMINOR", "S_WCS", "S_MTWCS", "S_BKDSUB",
    "S_BPXSLF", "S_BARSHA", "S_CHGMIG", "S_CLNFNS", "S_COMB1D", "S_IFUCUB", "S_DARK", "S_DQINIT", "S_MIREMI",
    "S_TELEMI", "S_ERRINI", "S_EXTR1D", "S_EXTR2D", "S_FRSTFR", "S_FLAT", "S_FRINGE", "S_GANSCL", "S_GRPSCL",
    "S_GUICDS", "S_IMPRNT", "S_IPC", "S_JUMP", "S_KLIP", "S_LASTFR", "S_LINEAR", "S_MSBSUB", "S_MSAFLG",
    "S_OUTLIR", "S_PTHLOS", "S_PERSIS", "S_PHOTOM", "S_PCTFRM", "S_PXREPL", "S_RAMP", "S_REFPIX", "S_RESAMP",
    "S_RESFRI", "S_RESET", "S_RSCD", "S_SATURA", "S_SKYMAT", "S_SRCCAT", "S_SPLEAK", "S_SRCTYP", "S_PSFSTK",
    "S_STRAY", "S_SUPERB", "S_TACNTR", "S_TSPHOT", "S_TWKREG", "S_WAVCOR", "S_WFSCOM", "S_CONTAM",
    "S_WHTLIT", "BKGMETH", "BKGLEVEL", "BKGSUB", "BKGD_SCL", ("BUNIT", "SCI"), ("PHOTMJSR", "SCI"),
    ("PHOTUJA2", "SCI"), ("PIXAR_SR", "SCI"), ("PIXAR_A2", "SCI"), ("RADESYS", "SCI"), ("RA_V1", "SCI"),
    ("DEC_V1", "SCI"), ("PA_V3", "SCI"), ("WCSAXES", "SCI"), ("CRPIX1", "SCI"), ("CRPIX2", "SCI"),
    ("CRPIX3", "SCI"), ("CRVAL1", "SCI"), ("CRVAL2", "SCI"), ("CRVAL3", "SCI"), ("CTYPE1", "SCI"),
    ("CTYPE2", "SCI"), ("CTYPE3", "SCI"), ("CUNIT1", "SCI"), ("CUNIT2", "SCI"), ("CUNIT3", "SCI"),
    ("CDELT1", "SCI"), ("CDELT2", "SCI"), ("CDELT3", "SCI"), ("PC1_1", "SCI"), ("PC1_2", "SCI"),
    ("PC1_3", "SCI"), ("PC2_1", "SCI"), ("PC2_2", "SCI"), ("PC2_3", "SCI"), ("PC3_1", "SCI"),
    ("PC3_2", "SCI"), ("PC3_3", "SCI"), ("CD1_1", "SCI"), ("CD1_2", "SCI"), ("CD2_1", "SCI"),
    ("CD2_2", "SCI"), ("S_REGION", "SCI"), ("WAVSTART", "SCI"), ("WAVEND", "SCI"), ("DISPAXIS", "SCI"),
    ("SPORDER", "SCI"), ("V2_REF", "SCI"), ("V3_REF", "SCI"), ("VPARITY", "SCI"), ("V3I_YANG", "SCI"),
    ("RA_REF", "SCI"), ("DEC_REF", "SCI"), ("ROLL_REF", "SCI"),
)
TABLE_COLUMNS: tuple[tuple[str, str], ...] = tuple((c, "PRIMARY") if isinstance(c, str) else c for c in _TABLE)

# the spectra's models (x1d, x1dints, c1d) have no SCI extension: their schema's HDRTAB lacks the
# image's WCS, photometry and pointing keywords, and the rest are found by name in any header
_NOT_IN_SPECTRA = {
    "PA_APER", "VA_SCALE", "BUNIT", "PHOTMJSR", "PHOTUJA2", "PIXAR_SR", "PIXAR_A2", "RADESYS", "RA_V1", "DEC_V1",
    "PA_V3", "WCSAXES", "CRPIX1", "CRPIX2", "CRPIX3", "CRVAL1", "CRVAL2", "CRVAL3", "CTYPE1", "CTYPE2", "CTYPE3",
    "CUNIT1", "CUNIT2", "CUNIT3", "CDELT1", "CDELT2", "CDELT3", "PC1_1", "PC1_2", "PC1_3", "PC2_1", "PC2_2", "PC2_3",
    "PC3_1", "PC3_2", "PC3_3", "CD1_1", "CD1_2", "CD2_1", "CD2_2", "S_REGION", "WAVSTART", "WAVEND", "DISPAXIS",
    "SPORDER", "V2_REF", "V3_REF", "VPARITY", "V3I_YANG", "RA_REF", "DEC_REF", "ROLL_REF",
    "MJD-BEG", "MJD-AVG", "MJD-END", "XPOSURE", "TELAPSE",  # the SCI extension's times (jwst's LRS tso3 x1dints)
}
SPECTRA_TABLE_COLUMNS: tuple[tuple[str, str], ...] = tuple(c for c in TABLE_COLUMNS if c[0] not in _NOT_IN_SPECTRA)

# keywords combined over the inputs, and how; every other keyword keeps the first input's value
BLEND_RULES: dict[tuple[str, str], str] = {
    ("DATE-OBS", "PRIMARY"): "min", ("TIME-OBS", "PRIMARY"): "min", ("DATE-BEG", "PRIMARY"): "min",
    ("DATE-END", "PRIMARY"): "max", ("DETECTOR", "PRIMARY"): "multi", ("MODULE", "PRIMARY"): "multi",
    ("FILTER", "PRIMARY"): "multi", ("FWPOSOFF", "PRIMARY"): "max", ("FWPOSTOL", "PRIMARY"): "wheeltol",
    ("PWPOSOFF", "PRIMARY"): "max", ("PWPOSTOL", "PRIMARY"): "wheeltol", ("GRATING", "PRIMARY"): "multi",
    ("BAND", "PRIMARY"): "multi", ("EXPSTART", "PRIMARY"): "min", ("MJD-BEG", "SCI"): "min",
    ("EXPMID", "PRIMARY"): "mean", ("MJD-AVG", "SCI"): "mean", ("EXPEND", "PRIMARY"): "max",
    ("MJD-END", "SCI"): "max", ("TDB-BEG", "SCI"): "min", ("TDB-MID", "SCI"): "mean", ("TDB-END", "SCI"): "max",
    ("INTSTART", "PRIMARY"): "min", ("INTEND", "PRIMARY"): "max", ("EFFEXPTM", "PRIMARY"): "sum",
    ("XPOSURE", "SCI"): "sum", ("TMEASURE", "PRIMARY"): "sum", ("DURATION", "PRIMARY"): "sum",
    ("TELAPSE", "SCI"): "sum",
}
# not blended: the combined product's own values
IGNORED = {("FILENAME", "PRIMARY"), ("PIXAR_SR", "SCI"), ("PIXAR_A2", "SCI")}

_OUT_OF_TOLERANCE = "outside calibration tolerance"


def _multi(values):
    return values[0] if len(set(values)) == 1 else "MULTIPLE"


def _wheeltol(values):
    return _OUT_OF_TOLERANCE if _OUT_OF_TOLERANCE in values else "within commanded tolerance"


_RULES = {
    "min": min, "max": max, "multi": _multi, "wheeltol": _wheeltol,
    "sum": lambda v: float(np.sum(v)) if any(isinstance(x, float) for x in v) else int(np.sum(v)),
    "mean": lambda v: float(np.mean(v)),
}


def keyword_values(model) -> dict[tuple[str, str], Any]:
    """Every keyword of a model's primary and SCI headers: the header cards as kept, then the
    modelled metadata over them (the model's current values)."""
    from astropy.io import fits

    from .meta import get_path

    out: dict[tuple[str, str], Any] = {}
    for hdu in ("PRIMARY", "SCI"):
        h = model._headers.get(hdu)
        if h is None:
            continue
        for card in h.cards:
            if card.keyword and card.keyword not in ("COMMENT", "HISTORY") and not isinstance(card.value, fits.card.Undefined):
                out[(card.keyword, hdu)] = card.value
    for path, key, hdu, _ann in type(model).keyword_fields():
        if hdu not in ("PRIMARY", "SCI"):
            continue
        v = get_path(model.meta, path)
        if v is None:
            out.pop((key, hdu), None)
        elif isinstance(v, (str, int, float, bool)) and not (isinstance(v, float) and not math.isfinite(v)):
            out[(key, hdu)] = v
    return out


class MetaBlender:
    """Accumulate the inputs one at a time (``accumulate``), then ``finalize`` the combined model."""

    def __init__(self, spectra: bool = False):
        # ``spectra``: blending spectra (x1d, x1dints), whose keywords sit in the primary header
        self.spectra = spectra
        self.columns = SPECTRA_TABLE_COLUMNS if spectra else TABLE_COLUMNS
        self.rows: list[dict[tuple[str, str], Any]] = []
        self.values: dict[tuple[str, str], list] = {k: [] for k in BLEND_RULES}

    def accumulate(self, model) -> None:
        kv = keyword_values(model)
        if self.spectra:  # by keyword name, wherever the model keeps it
            by_name = {}
            for (key, _hdu), v in kv.items():
                by_name.setdefault(key, v)
            kv = {c: by_name[c[0]] for c in set(self.columns) | set(self.values) if c[0] in by_name}
        self.rows.append({c: kv[c] for c in self.columns if c in kv})
        for k in self.values:
            if k in kv:
                self.values[k].append(kv[k])

    def blended(self) -> dict[tuple[str, str], Any]:
        return {k: _RULES[BLEND_RULES[k]](v) for k, v in self.values.items() if v and k not in IGNORED}

    def table(self):
        """The HDRTAB table (a FITS record array) of the accumulated inputs."""
        from astropy.io import fits

        arrays, dtype = [], []
        for col in self.columns:
            items = [row.get(col, _MISSING) for row in self.rows]
            if all(i is _MISSING for i in items):
                continue
            arr = np.array([np.nan if i is _MISSING else i for i in items])
            if arr.dtype == bool:
                arr = arr.astype(np.int8)
            arrays.append(arr)
            dtype.append((col[0], arr.dtype))
        rec = np.rec.fromarrays(arrays, dtype=dtype)
        # the table BinTableHDU.from_columns(rec).data gives, without the HDU (its header cards: a third of the time)
        return fits.FITS_rec.from_columns(fits.ColDefs(rec))

    def finalize(self, model) -> None:
        """Set the blended keywords on ``model`` (the first input's metadata already) and its HDRTAB."""
        by_key = {(key, hdu): path for path, key, hdu, _ann in type(model).keyword_fields()}
        by_name = {key: path for (key, _hdu), path in by_key.items()}
        for (key, hdu), value in self.blended().items():
            path = by_key.get((key, hdu)) or (by_name.get(key) if self.spectra else None)
            if path is not None:
                obj = model.meta
                for p in path[:-1]:
                    obj = getattr(obj, p)
                setattr(obj, path[-1], value)
            elif hdu in model._headers:
                model._headers[hdu][key] = value
        model.hdrtab = self.table()


class _Missing:
    pass


_MISSING = _Missing()


def first_input(model):
    """A metadata-only copy of a blended product with the first input's values of the blended
    keywords (from its HDRTAB), e.g. to select references as the Stage 3 flow selected them, on
    the first exposure: the blended product says DETECTOR = MULTIPLE for a mosaic of several."""
    from .meta import get_path

    table = model.hdrtab if model.has("hdrtab") else None
    if table is None or len(table) == 0:
        return model
    probe = type(model)()  # metadata only: reference selection reads no array
    probe.meta = model.meta.model_copy(deep=True)
    by_key = {(key, hdu): path for path, key, hdu, _ann in type(model).keyword_fields()}
    names = set(table.columns.names)
    for key, hdu in BLEND_RULES:
        path = by_key.get((key, hdu))
        if path is None or key not in names or get_path(probe.meta, path) is None:
            continue
        value = table[key][0]
        value = value.item() if hasattr(value, "item") else value
        obj = probe.meta
        for p in path[:-1]:
            obj = getattr(obj, p)
        try:
            setattr(obj, path[-1], value)
        except ValueError:
            pass
    return probe
