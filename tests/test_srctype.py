"""srctype against jwst's SourceTypeStep, case by case: the same SRCTYPE for the same headers."""

import pytest

from webbflow import models
from webbflow.tasks import srctype as _srctype  # noqa: F401 - registers the step
from webbflow.tasks.base import run_step

CASES = [
    # exp_type, tsovisit, bkgdtarg, srctyapt, patttype, dithopfr, user -> expected
    ("MIR_LRS-FIXEDSLIT", False, False, None, "ALONG-SLIT-NOD", None, None, "POINT"),
    ("MIR_LRS-FIXEDSLIT", False, False, "EXTENDED", "ALONG-SLIT-NOD", None, None, "EXTENDED"),
    ("MIR_LRS-FIXEDSLIT", False, True, "POINT", None, None, None, "EXTENDED"),
    ("MIR_LRS-FIXEDSLIT", False, False, "POINT", None, None, "EXTENDED", "EXTENDED"),
    ("MIR_LRS-SLITLESS", True, False, "EXTENDED", None, None, None, "POINT"),
    ("MIR_MRS", False, False, None, None, "POINT-SOURCE", None, "POINT"),
    ("MIR_MRS", False, False, "UNKNOWN", None, "EXTENDED-SOURCE", None, "EXTENDED"),
    ("NRS_IFU", False, False, None, None, None, None, "EXTENDED"),
    ("NRS_BRIGHTOBJ", False, False, None, None, None, None, "POINT"),
    ("NRC_TSIMAGE", False, False, None, None, None, None, "POINT"),
    ("MIR_IMAGE", False, False, None, None, None, None, "UNKNOWN"),
]


def _image(exp_type, tso, bkg, apt, patt, opt):
    m = models.ImageModel()
    import numpy as np

    m.data = np.zeros((4, 4), np.float32)
    m.meta.instrument.name = "NIRSPEC" if exp_type.startswith("NRS") else ("NIRCAM" if exp_type.startswith("NRC") else "MIRI")
    m.meta.exposure.type = exp_type
    m.meta.visit.tsovisit = tso
    m.meta.observation.bkgdtarg = bkg
    m.meta.target.source_type_apt = apt
    m.meta.dither.primary_type = patt
    m.meta.dither.optimized_for = opt
    return m


@pytest.mark.parity
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_srctype_matches_jwst(case):
    from jwst.srctype.srctype import set_source_type
    from stdatamodels.jwst import datamodels as jdm

    *head, user, expected = case
    ours = run_step("srctype", _image(*head), {"source_type": user}).model
    j = jdm.ImageModel((4, 4))
    exp_type, tso, bkg, apt, patt, opt = head
    j.meta.instrument.name = ours.meta.instrument.name
    j.meta.exposure.type = exp_type
    j.meta.visit.tsovisit = tso
    j.meta.observation.bkgdtarg = bkg
    if apt is not None:
        j.meta.target.source_type_apt = apt
    if patt is not None:
        j.meta.dither.primary_type = patt
    if opt is not None:
        j.meta.dither.optimized_for = opt
    theirs = set_source_type(j, user)  # the step's science function (the step itself asks CRDS for parameters)
    assert ours.meta.target.source_type == theirs.meta.target.source_type == expected
    assert ours.meta.cal_step.srctype == "COMPLETE"
    assert ours.meta.target.source_type_apt == theirs.meta.target.source_type_apt
