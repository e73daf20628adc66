"""The NIRSpec MOS simulator (refs/sim/nirspec_msa.py) with a grating and an IRS2 readout, and detector1 on it.

One simulation: G395M/F290LP, NRSIRS2RAPID (3200-row frames), 3 groups, the three nodded three-shutter slitlets.
jwst 3.0's ``calwebb_detector1`` runs on the first nod as strun runs it (from the simulation's folder, CRDS_PATH
the simulation, no override) and webbflow's detector1 on the same uncal file; the rate files are compared whole
(tests/test_products_whole.py: HDUs, keywords, arrays within rtol 1e-4 for 99.9 %, DQ equal).  (jwst: ~26 CPU-s.)
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from simrun import simulate_into
from test_products_whole import _quiet, compare_fits

pytestmark = pytest.mark.real  # the optical chain is the real one in ../shared/data

SIM = dict(instrument="nirspec", exp_type="NRS_MSASPEC", grating="G395M", filter="F290LP", readpatt="NRSIRS2RAPID",
           ngroups=3, seed=5)


@pytest.fixture(scope="module")
def irs2_msa(tmp_path_factory):
    return simulate_into(tmp_path_factory, "nrs_msa_irs2", SIM)


def test_msa_exposures_are_irs2_grating_exposures(irs2_msa):
    from astropy.io import fits

    sim = irs2_msa.sim
    assert len(sim.uncal) == 3
    for u in sim.uncal:
        with fits.open(u) as h:
            p = h[0].header
            assert (p["EXP_TYPE"], p["GRATING"], p["FILTER"], p["READPATT"]) == (
                "NRS_MSASPEC", "G395M", "F290LP", "NRSIRS2RAPID")
            assert (p["NRS_NORM"], p["NRS_REF"]) == (16, 4)
            assert h["SCI"].data.shape == (1, 3, 3200, 2048) and h["SCI"].data.dtype == np.uint16
            assert p["MSAMETFL"] == next(sim.output_dir.glob("*_msa.fits")).name


def test_grating_spectra_land_in_each_slitlet(irs2_msa):
    """The reference-pixel-corrected signal (rate-like: last minus first group, the IRS2 interleaved reference rows
    dropped) shows each slitlet's G395M spectrum over most of NRS1's width."""
    from astropy.io import fits

    from webbflow.refs.synthetic_nirspec import irs2_rows

    with fits.open(irs2_msa.sim.uncal[0]) as h:
        d = h["SCI"].data[0].astype(np.float64)
    normal = irs2_rows("NRS1", 16, 4)
    signal = (d[-1] - d[0])[normal]
    assert signal.shape == (2048, 2048)
    noise = np.median(np.abs(signal[:, 10:40]))
    traces = 0
    for c in (500, 1000, 1500):
        col = np.median(signal[:, c: c + 20], axis=1)
        traces = max(traces, len({r // 50 for r in np.flatnonzero(col > 30 * noise + 100)}))
    assert traces >= 3, traces


@pytest.mark.parity
def test_detector1_on_an_irs2_msa_exposure_whole(irs2_msa):
    from jwst.stpipe import Step

    from webbflow.flows.cli import main

    sim = irs2_msa.sim
    uncal = sim.uncal[0]
    jw = irs2_msa.root / "jwst"
    jw.mkdir()
    shutil.copy2(uncal, jw / uncal.name)

    def strun():
        cwd = os.getcwd()
        os.chdir(jw)
        try:
            Step.from_cmdline(["calwebb_detector1", uncal.name])
        finally:
            os.chdir(cwd)

    _quiet(strun, irs2_msa.cache, irs2_msa.context)
    ours = irs2_msa.root / "ours"
    _quiet(lambda: main(["run", "calwebb_detector1", str(uncal), "--output-dir", str(ours)]),
           irs2_msa.cache, irs2_msa.context)
    name = Path(uncal.name.replace("_uncal", "_rate"))
    problems: list[str] = []
    compare_fits("rate", ours / name, jw / name, problems)
    assert problems == [], "\n".join(problems)
