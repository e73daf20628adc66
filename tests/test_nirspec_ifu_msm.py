"""NIRSpec IFU cubes built with the point cloud (weighting msm and emsm), and the x1d of the point source with
its aperture correction, against jwst 3.0 on the same cal files.

One simulation (test_nirspec_ifu_sim's: PRISM/CLEAR on NRS1, two points of the CYCLING dither); jwst's
AssignWcs, SrcType, FlatField and Photom steps make the two cal files.  On those same files jwst's
CubeBuildStep and webbflow's cube_build build the 1.0-1.5 um cube with ``weighting=msm`` and ``emsm``
(field-of-view DQ flagging on, as spec3 runs it): from the first exposure alone and from both (band
cubes: the cubepar's CUBEPAR_MSM/EMSM row, the spatial region of interest 1.5 times larger under four
exposures for msm), and as spec2's ``output_type=multi`` cube (the non-linear wavelength axis with the
MULTICHAN_PRISM_MSM/EMSM table's regions of interest per wavelength).  Each cube: SCI, ERR, DQ and WMAP
within rtol 1e-4 on at least 99.9 % of the spaxels, and the file compared whole (keywords, WCS-TABLE).

extract_1d on the two-exposure msm cube of the point source, with the apcorr reference the simulation's
CRDS context selects (NrsIfuApcorrModel): jwst's Extract1dStep and webbflow's x1d compared whole, and the
correction is there: the corrected FLUX over the uncorrected one is above 1 and at most the reference's
largest correction.

The kernel check (no simulation): the NIRSpec field-of-view DQ of a point cloud is jwst's C wrapper's.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from simrun import simulate_into
from test_nirspec_ifu_sim import SIM, ifu_rate, jwst_cal
from test_products_whole import _quiet, compare_fits

CUBE_PARS = {"wavemin": 1.0, "wavemax": 1.5}
# the primary keywords a pipeline run sets around its steps (the steps run here on models, outside a pipeline)
AROUND = {"CAL_VCS", "CAL_VER", "CRDS_CTX", "CRDS_VER", "R_DISTOR", "R_FILOFF", "FILETYPE"}


@pytest.mark.parametrize("emsm", [True, False])
def test_point_cloud_field_of_view_dq_is_jwsts(emsm):
    """Slices of pixels on the tangent plane: the point-cloud sums and the NIRSpec DQ (each slice's extent on
    the planes within the pixels' mean roiw) equal those of jwst's ``cube_wrapper`` for NIRSpec."""
    pytest.importorskip("jwst")
    from jwst.cube_build.cube_match_sky_pointcloud import cube_wrapper

    from webbflow.tasks.cube_build import kernels

    rng = np.random.default_rng(7)
    # the cloud lies inside the cube's spaxel grid, and the spacing passed is the grid's, as in a real
    # build: jwst's C walk along a slice writes without bounds checks, so a slice reaching past the grid
    # writes outside its array (the heap corruption that once aborted a CI worker)
    cdelt = 0.1
    xc = -2.0 + cdelt * np.arange(41)
    yc = xc.copy()
    zc = 1.0 + 0.005 * (np.arange(40) + 0.5)
    cd3 = np.full(zc.size, 0.005)
    n = 3000
    slice_no = rng.integers(1, 31, n).astype(np.float64)
    cx = (slice_no - 15) * 0.1 + rng.uniform(-0.05, 0.05, n)
    cy = rng.uniform(-1.5, 1.5, n)
    wave = rng.uniform(zc[0] - 0.01, zc[-1] + 0.01, n)
    flux, err = rng.normal(10, 3, n), rng.uniform(0.1, 1, n)
    rois, roiw = np.full(n, 0.15), rng.uniform(0.008, 0.012, n)
    scalerad, power, softrad = np.full(n, 0.05), np.full(n, 2.0), np.full(n, 0.01)
    roiw_ave = float(np.mean(roiw))
    assert xc[0] <= cx.min() and cx.max() <= xc[-1] and yc[0] <= cy.min() and cy.max() <= yc[-1]
    theirs = cube_wrapper(1, 1, 0 if emsm else 1, 0, 0, 4, 2, xc, yc, zc, cx, cy, wave, flux, err, slice_no,
                          rois, roiw, scalerad, power, softrad, cd3, roiw_ave, cdelt, cdelt)
    ours = [np.zeros(xc.size * yc.size * zc.size) for _ in range(4)]
    kernels.pointcloud_exposure(xc, yc, zc, cd3, cdelt, cdelt, cx, cy, wave, flux, err, rois, roiw, scalerad, power,
                                softrad, emsm, *ours)
    dq = kernels.dq_nirspec(4, xc, yc, zc, cdelt, cdelt, roiw_ave, cx, cy, wave, slice_no)
    for a, b in zip(ours, theirs[:4]):
        np.testing.assert_array_equal(a, b)
    assert (theirs[4] != 0).sum() > 100
    np.testing.assert_array_equal(dq, theirs[4])


# ---------------------------------------------------------------------------
# cubes and spectrum from the simulation (real optical references)


@pytest.fixture(scope="module")
def ifu(tmp_path_factory):
    pytest.importorskip("jwst")
    return simulate_into(tmp_path_factory, "nrs_ifu_msm", SIM)


@pytest.fixture(scope="module")
def cals(ifu) -> list[Path]:
    """jwst's cal of each exposure, in the simulation's folder."""
    folder = ifu.root / "steps"
    out = []
    for uncal in ifu.sim.uncal:
        rate = ifu_rate(uncal, folder)
        cal = folder / uncal.name.replace("_uncal", "_cal")
        _quiet(lambda r=rate, c=cal: jwst_cal(r, c), ifu.cache, ifu.context)
        out.append(cal)
    return out


@pytest.fixture(scope="module")
def built(ifu, cals):
    """``built(weighting, nfiles, output_type)``: jwst's and webbflow's cube from the first ``nfiles`` cals,
    saved as ``<folder>/{ours,jwst}/cube_s3d.fits``; made once each."""
    made = {}

    def build(weighting: str, nfiles: int, output_type: str = "band"):
        key = (weighting, nfiles, output_type)
        if key in made:
            return made[key]
        pars = dict(CUBE_PARS, weighting=weighting, output_type=output_type)
        folder = ifu.root / f"cube_{weighting}_{nfiles}_{output_type}"
        paths = SimpleNamespace(ours=folder / "ours" / "cube_s3d.fits", jwst=folder / "jwst" / "cube_s3d.fits")
        for p in (paths.ours, paths.jwst):
            p.parent.mkdir(parents=True, exist_ok=True)
        inputs = [str(c) for c in cals[:nfiles]]

        def theirs():
            from jwst.cube_build import CubeBuildStep
            from jwst.datamodels import ModelContainer

            cubes = CubeBuildStep.call(inputs[0] if nfiles == 1 else ModelContainer(inputs), **pars)
            assert len(cubes) == 1
            name = cubes[0].meta.filename
            cubes[0].save(paths.jwst)
            return name

        def ours():
            from webbflow import models
            from webbflow.tasks import load_all
            from webbflow.tasks.base import run_step

            load_all()
            models_in = models.open(inputs[0]) if nfiles == 1 else [models.open(p) for p in inputs]
            cubes = run_step("cube_build", models_in, dict(pars)).model
            assert len(cubes) == 1
            name = cubes[0].meta.filename
            cubes[0].save(paths.ours)
            return name

        paths.names = (_quiet(ours, ifu.cache, ifu.context), _quiet(theirs, ifu.cache, ifu.context))
        made[key] = paths
        return paths

    return build


def _problems(name: str, ours: Path, theirs: Path) -> list[str]:
    problems: list[str] = []
    compare_fits(name, ours, theirs, problems)

    def pipeline_keywords_only(problem: str) -> bool:
        if "[PRIMARY]: keywords" not in problem:
            return False
        listed = problem.split(": ", 2)[-1].strip("[]").replace("'", "").split(", ")
        return set(listed) <= AROUND

    return [p for p in problems if not pipeline_keywords_only(p)]


@pytest.mark.real
@pytest.mark.parity
@pytest.mark.parametrize("weighting, nfiles, output_type", [
    ("msm", 1, "band"), ("emsm", 1, "band"), ("msm", 2, "band"), ("emsm", 2, "band"), ("msm", 2, "multi"),
    ("emsm", 1, "multi"),
])
def test_point_cloud_cube_matches_jwst(built, weighting, nfiles, output_type):
    from astropy.io import fits
    from test_mrs_extract import _arrays_agree

    paths = built(weighting, nfiles, output_type)
    ours_name, their_name = paths.names
    assert ours_name == their_name + "_s3d.fits", paths.names  # jwst's step names it without the suffix
    agree = _arrays_agree(paths.ours, paths.jwst, ("SCI", "ERR", "DQ", "WMAP"))
    print(f"{weighting} {nfiles} file(s) {output_type}: spaxels within rtol 1e-4 of jwst's:", agree)
    assert min(agree.values()) >= 0.999, agree
    with fits.open(paths.jwst) as h:
        assert h[0].header["WTYPE"] == weighting
        dq, sci = h["DQ"].data, h["SCI"].data
        assert np.isfinite(sci).sum() > 50_000 and (dq != 0).sum() > 10_000  # data, and the field's edges flagged
    problems = _problems("cube_s3d.fits", paths.ours, paths.jwst)
    assert not problems, "\n".join(["the cube differs from jwst's:"] + problems)


@pytest.mark.real
@pytest.mark.parity
def test_point_source_x1d_with_apcorr_matches_jwst(ifu, built):
    from astropy.io import fits

    paths = built("msm", 2)
    x1d = SimpleNamespace(ours=paths.ours.with_name("cube_x1d.fits"), jwst=paths.jwst.with_name("cube_x1d.fits"),
                          plain=paths.jwst.with_name("plain_x1d.fits"))

    def theirs():
        from jwst.extract_1d import Extract1dStep

        step = Extract1dStep()
        step.call(str(paths.jwst)).save(x1d.jwst)
        assert Path(step.get_reference_file(str(paths.jwst), "apcorr")).name.startswith("jwst_nirspec_apcorr")
        Extract1dStep.call(str(paths.jwst), apply_apcorr=False).save(x1d.plain)

    def ours():
        from webbflow import models
        from webbflow.tasks import load_all
        from webbflow.tasks.base import run_step

        load_all()
        run_step("extract_1d", models.open(str(paths.ours)), {}).model.save(x1d.ours)

    _quiet(ours, ifu.cache, ifu.context)
    _quiet(theirs, ifu.cache, ifu.context)
    with fits.open(x1d.jwst) as a, fits.open(x1d.plain) as b:
        assert a[1].header["SRCTYPE"] == "POINT"
        ratio = a[1].data["FLUX"] / b[1].data["FLUX"]
    ok = np.isfinite(ratio)
    assert ok.sum() > 50
    refs = ifu.cache / "references" / "jwst" / "nirspec"
    import asdf

    with asdf.open(next(refs.glob("jwst_nirspec_apcorr_*.asdf"))) as af:
        largest = float(np.max(af.tree["apcorr_table"]["apcorr"]))
    assert np.all(ratio[ok] > 1.0) and np.all(ratio[ok] <= largest), (ratio[ok].min(), ratio[ok].max())
    problems = _problems("cube_x1d.fits", x1d.ours, x1d.jwst)
    assert not problems, "\n".join(["the spectrum differs from jwst's:"] + problems)
