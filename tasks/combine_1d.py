"""combine_1d: one spectrum per spectral order from several 1-D spectra of a source (jwst's
Combine1dStep).

1. Every input spectrum (each EXTRACT1D table of each x1d; each integration of an x1dints)
   with some finite flux and monotonic wavelengths joins the spectra of its order.  Its weight
   is the exposure's EFFEXPTM (``exptime_key='exposure_time'``), EFFINTTM
   (``'integration_time'``) or 1 (``'unit_weight'``).
2. The output wavelengths: all input wavelengths, sorted; where n spectra overlap, runs of n
   neighbouring wavelengths that cluster (their spread is small against their neighbours') are
   replaced by their mean, so that each output element collects about one element of each input.
3. Each input element goes to the nearest output element (through the output's wavelength
   table, as jwst inverts the output's spectral WCS); DO_NOT_USE or NaN-flux elements are left
   out, other DQ flags are OR-ed into the output.  Optionally (``sigma_clip``) elements further
   than ``sigma_clip`` times the median absolute deviation from the median are dropped.
4. Flux and surface brightness are weighted means, their errors the weighted quadrature sums
   divided by the sum of weights; WEIGHT is the sum of weights, N_INPUT the number of inputs.
   Output elements no input reached are dropped.

The product is a MultiCombinedSpecModel (``_c1d``), one COMBINE1D table per order.

A WFSS x1d (WFSSMultiSpecModel: every source of a product, one row each) is combined per source, as
jwst 3.0 does: each source's spectra weighted by the file's first table's EFFEXPTM/EFFINTTM, into a
WFSSMultiCombinedSpecModel (one COMBINE1D table per order, one row per source); with one source
only, into that source's MultiCombinedSpecModel.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from ..errors import InputFileError, a_an
from ..models import dqflags
from ..models.spectra import COMBINED_COLUMNS, MultiCombinedSpecModel, Spectrum, new_spec_table
from .base import StepParams, step

log = logging.getLogger("webbflow.steps.combine_1d")

CARRIED = ("source_id", "dispersion_direction", "source_type", "source_ra", "source_dec")


class Combine1dParams(StepParams):
    exptime_key: str = "exposure_time"  # weight: exposure_time/effexptm, integration_time/effinttm, unit_weight
    sigma_clip: float | None = None  # drop elements this many MADs from the median


def weight_kind(key: str) -> str:
    k = key.lower()
    if k.startswith("integration") or k == "effinttm":
        return "integration_time"
    if k.startswith("exposure") or k == "effexptm":
        return "exposure_time"
    if k in ("unit_weight", "unit weight"):
        return "unit_weight"
    log.warning("Don't understand exptime_key = '%s'; using unit weight.", key)
    return "unit_weight"


def _monotonic(w) -> bool:
    if len(w) < 2:
        return True
    d = np.diff(w)
    return bool(np.all(d > 0) or np.all(d < 0))


def _spectra_of(model):
    """(table, meta, units) of each spectrum of an x1d, or of each integration of an x1dints."""
    for s in model.spec:
        t = s.spec_table
        if t.dtype["WAVELENGTH"].shape:  # x1dints: one spectrum per row, N_ALONGDISP long
            for r in range(len(t)):
                n = int(t["N_ALONGDISP"][r]) if "N_ALONGDISP" in t.dtype.names else t["WAVELENGTH"].shape[1]
                row = {c: np.asarray(t[c][r][:n]) for c in ("WAVELENGTH", "FLUX", "FLUX_ERROR", "SURF_BRIGHT", "SB_ERROR", "DQ")}
                yield row, s.meta, s.units
        else:
            yield {c: np.asarray(t[c]) for c in ("WAVELENGTH", "FLUX", "FLUX_ERROR", "SURF_BRIGHT", "SB_ERROR", "DQ")}, s.meta, s.units


def output_wavelengths(inputs: list[np.ndarray]) -> np.ndarray:
    """The combined spectrum's wavelengths for these input wavelength arrays (see the module)."""
    wl = np.sort(np.concatenate([w for w in inputs if len(w) > 1]))
    nwl = len(wl)
    n_in = np.zeros(nwl, dtype=np.int64)
    for w in inputs:
        if len(w) < 2:
            log.warning("A spectrum of length %d is degenerate: skipped", len(w))
            continue
        if w[1] > w[0]:
            lo, hi = w[0] - 0.5 * (w[1] - w[0]), w[-1] + 0.5 * (w[-1] - w[-2])
        elif w[1] < w[0]:
            lo, hi = w[-1] - 0.5 * (w[-2] - w[-1]), w[0] + 0.5 * (w[0] - w[1])
        else:
            log.warning("A spectrum has a constant wavelength: skipped")
            continue
        n_in += (wl >= lo) & (wl < hi)
    if np.any(n_in <= 0):
        raise ValueError("combine_1d: the input wavelengths do not cover their own range")
    spread = np.full(nwl, 9999.0)
    mean = np.full(nwl, -99.0)
    chosen = np.full(nwl, -99.0)
    # where one spectrum covers a wavelength it is an output wavelength; where n > 1 do, the n
    # wavelengths of the window around it (k - n + n//2 + 1 .. k + n//2) give its spread and mean,
    # taken for all the windows of one n at once (each row reduced as the 1-D slice would be)
    one = n_in == 1
    spread[one], mean[one], chosen[one] = 0.0, wl[one], wl[one]
    k_all = np.arange(nwl)
    for n in np.unique(n_in[n_in > 1]).tolist():
        ks = k_all[n_in == n]
        start = ks + n // 2 + 1 - n
        inside = (start >= 0) & (start + n <= nwl)
        ks, start = ks[inside], start[inside]
        if not len(ks):
            continue
        windows = wl[start[:, None] + np.arange(n)]
        spread[ks] = windows.std(axis=1)
        mean[ks] = windows.mean(axis=1)
        flat = ks[spread[ks] == 0.0]
        chosen[flat] = mean[flat]
    # a window whose spread is small against its neighbours' (cut x their mean) is a cluster
    cut = 0.8
    ref = np.empty(nwl)
    ref[0], ref[-1] = spread[1], spread[nwl - 2]
    ref[1:-1] = (spread[:-2] + spread[2:]) / 2.0
    cluster = (spread > 0.0) & (spread < cut * ref)
    chosen[cluster] = mean[cluster]
    # stretches with no clustered wavelength take the mean of each run of n: a run starting at i
    # is filled when nothing in chosen[i - 1 : i + n + 1] (capped at nwl - 1) is already positive
    # (or NaN); the windows are counted on the values before this pass, and the only one this pass
    # can have changed inside a window is the previous run's start, i - 1 (a run of one)
    blocked = np.concatenate(([0], np.cumsum(~(chosen <= 0.0)))).tolist()
    counts = n_in.tolist()
    filled = -2  # the last run start this pass filled with a value that blocks
    i = 0
    while i < nwl:
        n = counts[i]
        if i + n // 2 < nwl:
            n = counts[i + n // 2]
            if i + n < nwl:
                lo, hi = max(i - 1, 0), min(i + n + 1, nwl - 1)
                if blocked[hi] == blocked[lo] and filled != i - 1:
                    value = wl[i:i + n].mean()
                    chosen[i] = value
                    if not value <= 0.0:
                        filled = i
        i += n
    return np.sort(chosen[chosen > 0.0])


def combine(models_in, params: Combine1dParams) -> MultiCombinedSpecModel | None:
    """Combine the spectra of ``models_in`` (MultiSpecModels or TSOMultiSpecModels), one output per order."""
    kind = weight_kind(params.exptime_key)
    by_order: dict = {}
    for model in models_in:
        if not hasattr(model, "spec"):
            raise InputFileError(model.meta.filename or "input", f"is {a_an(type(model).__name__)}, not a spectrum (x1d)")
        for row, meta, units in _spectra_of(model):
            if not np.any(np.isfinite(row["FLUX"])):
                log.warning("Input spectrum %s order %s has no valid flux values; skipping.",
                            meta.get("source_id"), meta.get("spectral_order"))
                continue
            if not _monotonic(row["WAVELENGTH"]):
                log.warning("Input spectrum %s order %s does not have monotonic wavelengths; skipping.",
                            meta.get("source_id"), meta.get("spectral_order"))
                continue
            if kind == "integration_time":
                w = model.meta.exposure.integration_time
            elif kind == "exposure_time":
                w = model.meta.exposure.exposure_time
            else:
                w = 1.0
            ra = dec = None
            wcs = (meta.get("meta") or {}).get("wcs")
            if wcs is not None:
                ra, dec, _ = wcs(0.0)
            else:
                ra, dec = model.meta.target.ra, model.meta.target.dec
            by_order.setdefault(meta.get("spectral_order"), []).append(
                {"row": row, "meta": meta, "units": units, "weight": float(w) if w is not None else np.nan,
                 "ra": ra, "dec": dec})
    if not by_order:
        log.error("No valid input spectra found for source. Skipping.")
        return None
    out = MultiCombinedSpecModel()
    first = models_in[0]
    out.meta = first.meta.model_copy(deep=True)
    out.meta.model_type = "MultiCombinedSpecModel"
    out.meta.filetype = None
    if "PRIMARY" in first._headers:
        out._headers = {"PRIMARY": first._headers["PRIMARY"].copy()}
    for order, items in by_order.items():
        wave = output_wavelengths([it["row"]["WAVELENGTH"] for it in items])
        nel, nsp = len(wave), len(items)
        acc = {c: np.zeros((nsp, nel)) for c in ("FLUX", "FLUX_ERROR", "SURF_BRIGHT", "SB_ERROR", "WEIGHT", "N")}
        dq = np.zeros(nel, dtype=np.uint32)
        pix = np.arange(nel, dtype=float)
        for s, it in enumerate(items):
            r = it["row"]
            inside = (r["WAVELENGTH"] >= wave[0]) & (r["WAVELENGTH"] <= wave[-1])
            where = np.interp(r["WAVELENGTH"], wave, pix)
            use = inside & ~((r["DQ"] & dqflags.DO_NOT_USE) > 0) & ~np.isnan(r["FLUX"])
            k = np.rint(where[use]).astype(np.int64)
            ok = (k >= 0) & (k < nel)
            k = k[ok]
            np.bitwise_or.at(dq, k, r["DQ"][use][ok].astype(np.uint32))
            for c in ("FLUX", "FLUX_ERROR", "SURF_BRIGHT", "SB_ERROR"):
                acc[c][s, k] = r[c][use][ok]  # repeated targets: the later element stays, as jwst's loop
            acc["WEIGHT"][s, k] = it["weight"]
            acc["N"][s, k] = 1.0
        flux, err, sb, sberr, wt, n = (acc[c] for c in ("FLUX", "FLUX_ERROR", "SURF_BRIGHT", "SB_ERROR", "WEIGHT", "N"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if params.sigma_clip is not None:
                fw = flux * wt
                fw[(n < 1) | (fw == 0.0)] = np.nan
                med = np.nanmedian(fw, axis=0)
                mad = np.nanmedian(np.abs(fw - med))
                clip = np.abs(flux * wt - med) > params.sigma_clip * mad
                for a in (flux, err, sb, sberr):
                    a[clip] = np.nan
                n[clip] = 0
                wt[clip] = 0
            wsum = np.nansum(wt, axis=0)
            div = np.where(wsum > 0.0, wsum, 1.0)
            cols = {
                "WAVELENGTH": wave, "FLUX": np.nansum(flux * wt, axis=0) / div,
                "ERROR": np.sqrt(np.nansum((err * wt) ** 2, axis=0)) / div,
                "SURF_BRIGHT": np.nansum(sb * wt, axis=0) / div,
                "SB_ERROR": np.sqrt(np.nansum((sberr * wt) ** 2, axis=0)) / div,
                "DQ": dq, "WEIGHT": wsum, "N_INPUT": np.nansum(n, axis=0),
            }
        keep = cols["N_INPUT"] > 0
        if (~keep).any():
            log.warning("%d elements of output had no corresponding input data;", int((~keep).sum()))
            log.warning("    these elements will be omitted.")
        table = new_spec_table(int(keep.sum()), columns=COMBINED_COLUMNS)
        for c, v in cols.items():
            table[c] = v[keep]
        u = items[0]["units"]
        units = {"WAVELENGTH": "um", "FLUX": u.get("FLUX"), "ERROR": u.get("FLUX"), "SURF_BRIGHT": u.get("SURF_BRIGHT"),
                 "SB_ERROR": u.get("SURF_BRIGHT")}
        meta = {"spectral_order": order}
        for a in CARRIED:
            meta[a] = items[0]["meta"].get(a)
        if out.meta.wcs is None:  # the first order's, as jwst records it
            from .extract_1d import spectral_wcs

            out.meta.wcs = spectral_wcs(items[0]["ra"], items[0]["dec"], wave)
        out.spec.append(Spectrum(table, meta, {k: v for k, v in units.items() if v}))
    out.meta.cal_step.combine_1d = "COMPLETE"
    return out


@step("combine_1d", "Combine1dStep", params=Combine1dParams, suffix="c1d", input_class="ModelLibrary")
def combine_1d(model, refs, params: Combine1dParams):
    """Combine 1-D spectra of one source (an x1d, a list of them, or an association's) into one per order."""
    if hasattr(model, "to_list"):  # a model library (an association's members)
        members = model.to_list()
    else:
        members = list(model) if isinstance(model, (list, tuple)) else [model]
    if len(members) == 1 and type(members[0]).__name__ == "WFSSMultiSpecModel":
        return combine_wfss(members[0], params)
    out = combine(members, params)
    if out is None:
        for m in members:
            m.meta.cal_step.combine_1d = "SKIPPED"
        return (members[0] if len(members) == 1 else model), "SKIPPED"
    return out


def combine_wfss(model, params: Combine1dParams):
    """combine_1d of a WFSS x1d: per source, then joined (see the module)."""
    from ..models.spectra import MultiSpecModel
    from ..models.wfss_spectra import expand_wfss, wfss_c1d

    per_source = expand_wfss(model)
    first_ext = model.spec[0].meta if model.spec else {}
    outputs = []
    for _sid, spectra, _e, _i in per_source:
        x1d = MultiSpecModel()
        x1d.meta = model.meta.model_copy(deep=True)
        x1d.meta.model_type = "MultiSpecModel"
        # jwst gives every source the first table's times (one weight per source)
        x1d.meta.exposure.exposure_time = first_ext.get("exposure_time")
        x1d.meta.exposure.integration_time = first_ext.get("integration_time")
        x1d._headers = {k: h.copy() for k, h in model._headers.items() if k == "PRIMARY"}
        x1d.spec = spectra
        out = combine([x1d], params)
        if out is not None:
            outputs.append(out)
    if not outputs:
        log.error("No valid input spectra found in WFSSMultiSpecModel. Skipping.")
        model.meta.cal_step.combine_1d = "SKIPPED"
        return model, "SKIPPED"
    if len(per_source) == 1:
        return outputs[0]
    c1d = wfss_c1d([list(o.spec) for o in outputs], outputs[0])
    c1d.meta.cal_step.combine_1d = "COMPLETE"
    return c1d
