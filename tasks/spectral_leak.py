"""spectral_leak: MIRI MRS channel 3A corrected for the second-order leak of channel 1B (jwst's SpectralLeakStep).

Light near 6 um (channel 1B, band MEDIUM) reaches the 12 um channel 3A (band SHORT) through a
second-order leak.  Given the x1d spectra of a Stage 3 MRS run (a list, as jwst's spec3 hands
them over), the step finds the spectrum covering channel 1B (a channel 1 MEDIUM cube, or a
multi-band channel 1 cube whose wavelengths straddle 6 um) and the one covering channel 3A (a
channel 3 SHORT cube, or a multi-band one straddling 12 um), and subtracts from channel 3A's
FLUX, at each of its wavelengths w,

    F_1B(w / 2) x frac_leak(w)

(F_1B interpolated at w / 2; frac_leak from the ``mrsptcorr`` reference's LEAKCOR table, both
linearly, held constant past the ends), and likewise from RF_FLUX with channel 1B's RF_FLUX.
Only the channel 3A spectrum is marked COMPLETE.  With no 1B or no 3A spectrum, an extended
source, or input that is not a list of extracted spectra, every input is marked SKIPPED and
returned unchanged.
"""

from __future__ import annotations

import logging

import numpy as np

from .. import models
from ..errors import ReferenceFileError
from .base import StepParams, step

log = logging.getLogger("webbflow.steps.spectral_leak")

CH1B_WAVE = 6.0  # microns inside channel 1B
CH3A_WAVE = 12.0  # microns inside channel 3A


def _covers(spec, w: float) -> bool:
    wave = np.asarray(spec.spec_table["WAVELENGTH"])
    return wave.size > 0 and np.nanmin(wave) < w < np.nanmax(wave)


def find_leak_pair(spectra) -> tuple[int | None, int | None, str]:
    """The indices of the channel 1B and channel 3A spectra (None when absent), and why the
    correction cannot run ("" when it can)."""
    i1b = i3a = None
    for i, x1d in enumerate(spectra):
        if not isinstance(x1d, (models.MultiSpecModel, models.MRSMultiSpecModel)) or not x1d.spec:
            return None, None, f"input {i} is not an extracted spectrum ({type(x1d).__name__})"
        channel = str(x1d.meta.instrument.channel or "")
        band = str(x1d.meta.instrument.band or "").upper()
        if x1d.spec[0].meta.get("source_type") == "EXTENDED":
            return None, None, "no spectral leak correction for extended source data"
        if "1" in channel and ("MEDIUM" in band or ("MULTIPLE" in band and _covers(x1d.spec[0], CH1B_WAVE))):
            i1b = i
        if "3" in channel and ("SHORT" in band or ("MULTIPLE" in band and _covers(x1d.spec[0], CH3A_WAVE))):
            i3a = i
    if i1b is None or i3a is None:
        return i1b, i3a, "CH1B and CH3A were not found. No spectral leak correction"
    return i1b, i3a, ""


def leak(ref, wave3a, wave1b, flux1b) -> np.ndarray:
    """The leaked flux at channel 3A's wavelengths: F_1B(w / 2) x frac_leak(w)."""
    tab = ref.leakcor_table
    names = {n.lower(): n for n in tab.dtype.names}
    if "wavelength" not in names or "frac_leak" not in names:
        raise ReferenceFileError("mrsptcorr", ref.meta.filename or "(mrsptcorr)",
                                 "its LEAKCOR table has no wavelength and frac_leak columns")
    lw = np.asarray(tab[names["wavelength"]], dtype=np.float64)
    lf = np.asarray(tab[names["frac_leak"]], dtype=np.float64)
    return np.interp(wave3a, 2 * np.asarray(wave1b), np.asarray(flux1b)) * np.interp(wave3a, lw, lf)


def correct(spectra: list, ref) -> tuple[list, int | None]:
    """Subtract the leak from the channel 3A spectrum (in place); returns (spectra, index of 3A or None)."""
    i1b, i3a, why = find_leak_pair(spectra)
    if why:
        log.warning(why)
        return spectra, None
    t1b, t3a = spectra[i1b].spec[0].spec_table, spectra[i3a].spec[0].spec_table
    w3a = np.asarray(t3a["WAVELENGTH"])
    t3a["FLUX"] = t3a["FLUX"] - leak(ref, w3a, t1b["WAVELENGTH"], t1b["FLUX"])
    both_mrs = all(isinstance(spectra[i], models.MRSMultiSpecModel) for i in (i1b, i3a))
    if both_mrs and "RF_FLUX" in t3a.dtype.names and "RF_FLUX" in t1b.dtype.names:
        t3a["RF_FLUX"] = t3a["RF_FLUX"] - leak(ref, w3a, t1b["WAVELENGTH"], t1b["RF_FLUX"])
    log.info("Channel 3A (%s) corrected for the channel 1B leak", spectra[i3a].meta.filename or i3a)
    return spectra, i3a


@step("spectral_leak", "SpectralLeakStep", params=StepParams, reftypes=("mrsptcorr",), suffix="spectral_leak",
      input_class="ModelContainer")
def spectral_leak(spectra, refs, params: StepParams):
    """Correct MIRI MRS channel 3A spectra for the spectral leak of channel 1B (mrsptcorr)."""
    from .base import _record_ref

    one = not isinstance(spectra, (list, tuple))
    items = [spectra] if one else list(spectra)
    ref = refs["mrsptcorr"]
    path = getattr(ref, "_path", None) or ref.meta.filename or "N/A"
    if one:  # jwst's step takes a list of spectra; anything else it returns marked SKIPPED
        log.warning("Data sent to spectral_leak step is not a list of spectra. It is %s.", type(spectra).__name__)
    _, i3a = correct(items, ref) if not one else (items, None)
    for i, m in enumerate(items):
        if i3a is None:
            m.meta.cal_step.spectral_leak = "SKIPPED"
        elif i == i3a:
            m.meta.cal_step.spectral_leak = "COMPLETE"
        if not one and isinstance(m, models.DataModel):
            _record_ref(m, "mrsptcorr", str(path))
    return items[0] if one else items


def _register_extras():
    from .base import STEPS

    STEPS["spectral_leak"].extra["records_status"] = True  # only channel 3A is marked COMPLETE


_register_extras()
