"""NIRSpec IRS2 readout layout: where the interleaved reference pixels sit.

An IRS2 ("improved reference sampling and subtraction") frame of a NIRSpec
detector is 3200 pixels long along the readout direction instead of 2048:

- the first 640 pixels of each detector row come from the *reference
  output* (a fifth output reading a column of unilluminated pixels);
- then each of the four science outputs reads 640 pixels: in every period
  of ``NRS_NORM + NRS_REF`` (16 + 4) pixels, ``NRS_NORM/2`` normal pixels,
  ``NRS_REF`` interleaved reference pixels, ``NRS_NORM/2`` normal pixels.
  Outputs 2 and 4 are read in the opposite direction.

In jwst's DMS orientation the long axis is the row axis (shape ``(3200,
2048)``, SUBSIZE2 still 2048); NRS2's rows are the detector's in reverse
order.  The 2048 "normal" rows are the ones every reference file except the
IRS2 ones (mask, superbias, refpix) is made for.

``normal_mask`` gives the boolean selector of the normal pixels along the
readout axis; ``normal_rows``/``from_irs2``/``to_irs2`` apply it to DMS
arrays for NRS1 and NRS2.
"""

from __future__ import annotations

import numpy as np

IRS2_LENGTH = 3200
NORMAL_LENGTH = 2048


def is_irs2(model_or_array) -> bool:
    """True when the frame is longer than 2048 pixels on either axis (jwst's test)."""
    arr = model_or_array if isinstance(model_or_array, np.ndarray) else getattr(model_or_array, "data", None)
    if arr is None:
        return False
    return max(arr.shape[-2:]) > NORMAL_LENGTH


def is_irs2_readout(model) -> bool:
    """From the metadata alone: a NIRSpec IRS2 readout pattern (NRSIRS2, NRSIRS2RAPID)."""
    inst = str(model.meta.instrument.name or "").upper()
    return inst == "NIRSPEC" and "IRS2" in str(model.meta.exposure.readpatt or "").upper()


def irs2_parameters(model) -> tuple[int, int]:
    """(NRS_NORM, NRS_REF) of the exposure, 16 and 4 when the keywords are missing."""
    e = model.meta.exposure
    n = getattr(e, "nrs_normal", None)
    r = getattr(e, "nrs_reference", None)
    return (16 if n is None else int(n)), (4 if r is None else int(r))


def normal_mask(length: int = IRS2_LENGTH, n_norm: int = 16, n_ref: int = 4) -> np.ndarray:
    """Boolean mask along the readout axis (detector order): True for normal pixels.

    The reference output is ``512 + 512 // n_norm * n_ref`` long; after it, each
    of the four outputs holds periods of ``n_norm/2`` normal, ``n_ref``
    reference and ``n_norm/2`` normal pixels.  When an output's length is not a
    whole number of periods the pattern of outputs 2 and 4 is mirrored, since
    they are read backwards.
    """
    refout = 512 + 512 // n_norm * n_ref
    per_output = (length - refout) // 4
    periods = per_output // (n_norm + n_ref)
    normals = per_output - periods * n_ref
    mask = np.ones(length, dtype=bool)
    mask[:refout] = False
    one = np.ones(per_output, dtype=bool)
    for start in range(n_norm // 2, per_output + 1, n_norm + n_ref):
        one[start : start + n_ref] = False
    if normals % n_norm == 0:
        # the same positions whichever way an output is read
        for start in range(refout + n_norm // 2, length + 1, n_norm + n_ref):
            mask[start : start + n_ref] = False
        return mask
    for k in range(4):
        seg = slice(refout + k * per_output, refout + (k + 1) * per_output)
        mask[seg] = one if k % 2 == 0 else one[::-1]
    return mask


def dms_row_mask(model) -> np.ndarray:
    """The normal-pixel mask along the DMS row axis of an IRS2 exposure (reversed for NRS2)."""
    n, r = irs2_parameters(model)
    length = max(model.data.shape[-2:]) if getattr(model, "data", None) is not None else IRS2_LENGTH
    mask = normal_mask(length, n, r)
    detector = str(model.meta.instrument.detector or "").upper()
    if detector == "NRS2":
        return mask[::-1].copy()
    if detector != "NRS1":
        raise ValueError(f"IRS2 readouts exist for the NIRSpec detectors NRS1 and NRS2, not {detector or '(none)'}")
    return mask


def from_irs2(arr: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The normal rows of a DMS-oriented IRS2 array (..., 3200, nx): a copy (..., 2048, nx)."""
    return arr[..., rows, :]


def to_irs2(arr: np.ndarray, normal: np.ndarray, rows: np.ndarray) -> None:
    """Write ``normal`` (..., 2048, nx) back into the normal rows of ``arr`` (..., 3200, nx), in place."""
    arr[..., rows, :] = normal
