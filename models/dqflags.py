"""JWST data-quality bit values, defined once for the whole package.

The values are JWST's (a bit each); a pixel's DQ word is the OR of its flags.
"""

from __future__ import annotations

PIXEL: dict[str, int] = {
    "GOOD": 0,
    "DO_NOT_USE": 1 << 0,
    "SATURATED": 1 << 1,
    "JUMP_DET": 1 << 2,
    "DROPOUT": 1 << 3,
    "OUTLIER": 1 << 4,
    "PERSISTENCE": 1 << 5,
    "AD_FLOOR": 1 << 6,
    "CHARGELOSS": 1 << 7,
    "RESERVED": 1 << 8,
    "NON_SCIENCE": 1 << 9,
    "DEAD": 1 << 10,
    "HOT": 1 << 11,
    "WARM": 1 << 12,
    "LOW_QE": 1 << 13,
    "RC": 1 << 14,
    "TELEGRAPH": 1 << 15,
    "NONLINEAR": 1 << 16,
    "BAD_REF_PIXEL": 1 << 17,
    "NO_FLAT_FIELD": 1 << 18,
    "NO_GAIN_VALUE": 1 << 19,
    "NO_LIN_CORR": 1 << 20,
    "NO_SAT_CHECK": 1 << 21,
    "UNRELIABLE_BIAS": 1 << 22,
    "UNRELIABLE_DARK": 1 << 23,
    "UNRELIABLE_SLOPE": 1 << 24,
    "UNRELIABLE_FLAT": 1 << 25,
    "OPEN": 1 << 26,
    "ADJ_OPEN": 1 << 27,
    "FLUX_ESTIMATED": 1 << 28,
    "MSA_FAILED_OPEN": 1 << 29,
    "OTHER_BAD_PIXEL": 1 << 30,
    "REFERENCE_PIXEL": 1 << 31,
}

# Flags that may appear in a GROUPDQ array.
GROUP: dict[str, int] = {
    k: PIXEL[k]
    for k in ("GOOD", "DO_NOT_USE", "SATURATED", "JUMP_DET", "DROPOUT", "PERSISTENCE", "AD_FLOOR", "CHARGELOSS")
}

# Module-level names for the common ones: dqflags.SATURATED, ...
globals().update(PIXEL)


def interpret_bit_flags(names: str | list[str] | int | None) -> int:
    """Turn ``"JUMP_DET, SATURATED"`` or ``["JUMP_DET", 2]`` into an integer mask."""
    if names is None:
        return 0
    if isinstance(names, int):
        return names
    if isinstance(names, str):
        names = [n for n in names.replace("+", ",").split(",") if n.strip()]
    mask = 0
    for n in names:
        if isinstance(n, int):
            mask |= n
        else:
            n = n.strip().upper()
            mask |= int(n) if n.isdigit() else PIXEL[n]
    return mask


def dq_from_definition(dq, dq_def) -> "object":
    """Map a reference file's DQ array onto JWST's standard bits using its DQ_DEF table.

    Reference files may number their flags differently; DQ_DEF gives each
    bit's name.  Returns a new uint32 array in the standard bit values.
    """
    import numpy as np

    if dq_def is None or len(dq_def) == 0:
        return np.asarray(dq, dtype=np.uint32)
    dq = np.asarray(dq).astype(np.uint32, copy=False)
    out = np.zeros(dq.shape, dtype=np.uint32)
    for row in dq_def:
        value = int(row["VALUE"])
        name = row["NAME"]
        if isinstance(name, bytes):
            name = name.decode()
        name = name.strip().upper()
        std = PIXEL.get(name, PIXEL["OTHER_BAD_PIXEL"] if value else 0)
        if value and std:
            out[(dq & np.uint32(value)) != 0] |= np.uint32(std)
    return out


def dq_def_table(names: list[str] | None = None):
    """A DQ_DEF table (BIT, VALUE, NAME, DESCRIPTION) for the given flag names."""
    import numpy as np

    names = names or [k for k in PIXEL if k != "GOOD"]
    dtype = [("BIT", ">i4"), ("VALUE", ">u4"), ("NAME", "S40"), ("DESCRIPTION", "S80")]
    rows = []
    for n in names:
        v = PIXEL[n]
        rows.append((v.bit_length() - 1, v, n.encode(), n.replace("_", " ").lower().encode()))
    return np.array(rows, dtype=dtype)
