"""ami_normalize: calibrate a target's AMI observables by a reference star's (jwst's AmiNormalizeStep).

Closure phases are differenced, squared visibilities and visibility amplitudes divided, closure
amplitudes become the log of their ratio; errors add in quadrature (relative errors for the
ratios).  OI_ARRAY keeps both stars' pistons (PISTON_T, PISTON_C) and their combined error.
The product (``_aminorm-oi``) is the target's OIFITS model otherwise, with CALIB naming the
reference star.
"""

from __future__ import annotations

import numpy as np

from .base import StepParams, step


class AmiNormalizeParams(StepParams):
    suffix: str | None = "aminorm-oi"


_ARRAY_DTYPE = [("TEL_NAME", "S16"), ("STA_NAME", "S16"), ("STA_INDEX", "<i2"), ("DIAMETER", "<f4"),
                ("STAXYZ", "<f8", (3,)), ("FOV", "<f8"), ("FOVTYPE", "S6"), ("CTRS_EQT", "<f8", (2,)),
                ("PISTON_T", "<f8"), ("PISTON_C", "<f8"), ("PIST_ERR", "<f8")]


def normalize(target, reference):
    """The target's observables calibrated by the reference star's (see the module's description)."""
    from ._ami_oifits import oifits_keywords

    t, c = target, reference
    out = t.copy()
    for name in ("t3", "vis", "vis2", "q4", "array"):
        if getattr(t, name) is None or getattr(c, name) is None:
            raise ValueError(f"both inputs need an OI_{name.upper()} table")
        if len(getattr(t, name)) != len(getattr(c, name)):
            raise ValueError(f"the target's and the reference's OI_{name.upper()} tables differ in length")
    t3, vis, vis2, q4 = (np.array(getattr(out, n)).copy() for n in ("t3", "vis", "vis2", "q4"))
    cp = t.t3["T3PHI"] - c.t3["T3PHI"]
    v2 = t.vis2["VIS2DATA"] / c.vis2["VIS2DATA"]
    va = t.vis["VISAMP"] / c.vis["VISAMP"]
    ca = np.log(t.q4["Q4AMP"] / c.q4["Q4AMP"])
    t3["T3PHI"] = cp
    t3["T3PHIERR"] = np.sqrt(t.t3["T3PHIERR"] ** 2.0 + c.t3["T3PHIERR"] ** 2.0)
    vis2["VIS2DATA"] = v2
    vis2["VIS2ERR"] = v2 * np.sqrt((c.vis2["VIS2ERR"] / t.vis2["VIS2DATA"]) ** 2.0
                                   + (t.vis2["VIS2ERR"] / c.vis2["VIS2DATA"]) ** 2.0)
    vis["VISAMP"] = va
    vis["VISAMPERR"] = va * np.sqrt((t.vis["VISAMPERR"] / t.vis["VISAMP"]) ** 2.0
                                    + (c.vis["VISAMPERR"] / c.vis["VISAMP"]) ** 2.0)
    q4["Q4AMP"] = ca
    q4["Q4AMPERR"] = np.sqrt((t.q4["Q4AMPERR"] / t.q4["Q4AMP"]) ** 2 + (c.q4["Q4AMPERR"] / c.q4["Q4AMP"]) ** 2)
    arr = np.zeros(len(t.array), dtype=_ARRAY_DTYPE)
    for k in ("TEL_NAME", "STA_NAME", "STA_INDEX", "DIAMETER", "STAXYZ", "FOV", "FOVTYPE", "CTRS_EQT"):
        arr[k] = t.array[k]
    arr["PISTON_T"], arr["PISTON_C"] = t.array["PISTONS"], c.array["PISTONS"]
    arr["PIST_ERR"] = np.sqrt(t.array["PIST_ERR"] ** 2 + c.array["PIST_ERR"] ** 2)
    out.t3, out.vis, out.vis2, out.q4, out.array = t3, vis, vis2, q4, arr
    out.set_keyword("CALIB", c.meta.target.proposer_name)
    oifits_keywords(out)
    return out


@step("ami_normalize", "AmiNormalizeStep", params=AmiNormalizeParams, suffix="aminorm-oi", input_class="AmiOIModel")
def ami_normalize(models, refs, params: AmiNormalizeParams):
    """Calibrate a target's OIFITS observables by a reference star's: ``models`` is (target, reference)."""
    from ..errors import ParameterError

    if not isinstance(models, (list, tuple)) or len(models) != 2:
        raise ParameterError("ami_normalize takes two inputs: the target's and the reference star's ami-oi products "
                             "(run it through ami3 on an association)")
    target, reference = models
    return normalize(target, reference)
