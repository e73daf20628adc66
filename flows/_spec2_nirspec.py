"""spec2 branches of the NIRSpec slit modes (added to :data:`flows.calwebb_spec2.BRANCHES`).

jwst 3.0's Spec2Pipeline sends NRS_FIXEDSLIT and NRS_BRIGHTOBJ through ``_process_nirspec_slits``
and NRS_MSASPEC through ``_process_nirspec_msa_slits``: after assign_wcs (and the imprint and
background subtractions when the association has those members), extract_2d, srctype,
master_background_mos, wavecorr, flat_field, pathloss, barshadow, photom; then resample_spec (an
s2d, not for a time series) and extract_1d.  Its step verification skips the steps a mode does
not take, and records them SKIPPED on the products:

- fixed slits: msa_flagging, imprint, barshadow, master_background_mos (nothing recorded for
  the last), and the default-skipped badpix_selfcal and clean_flicker_noise;
- bright-object TSO: the same plus pathloss; the cutout of every integration gives the calints
  and, with no resampling, the x1dints;
- MSA: msa_flagging (tasks/msa_flagging.py: the failed-open shutters of the ``msaoper`` reference
  flagged through the exposure's optical chain, with the WCS references assign_wcs used), then
  imprint (tasks/imprint.py, jwst's imprint_subtract: the association's imprint member subtracted;
  SKIPPED with none, as jwst records it), then extract_2d, srctype, master_background_mos
  (tasks/master_background_mos.py), wavecorr and on; barshadow runs (tasks/barshadow.py).
  master_background_mos makes jwst's decisions (SKIPPED after a nod subtraction, FAILED with no
  background or no source slitlet) and subtracts the master background made from the background
  slitlets, calibrating its copy with this flow's flat_field, pathloss, barshadow and photom
  settings (``_inherit_mbkg_substeps``), as jwst's pipeline hands its own down.
- MSA with fixed slits (the MSA metadata file's ``fixed_slit`` rows: quadrant-5 slits named S200A1, ...):
  after srctype the slits split as jwst 3.0's ``_process_nirspec_msa_slits`` splits them
  (:func:`_msa_calibrate`): the MSA's slitlets go on through master_background_mos to photom; the
  fixed slits, each marked EXP_TYPE NRS_FIXEDSLIT, through wavecorr, flat_field, pathloss and photom as
  an NRS_FIXEDSLIT exposure, with the references CRDS selects for that mode; their cutouts follow the
  slitlets' in the cal.  extract_1d splits the s2d again by slit name (:func:`_msa_extract`): the fixed
  slits are extracted as NRS_FIXEDSLIT, their spectra after the slitlets'.
- In a Prefect flow run, the MSA's per-slit steps (after master_background_mos: wavecorr to photom; the
  fixed slits' chain; resample_spec; extract_1d) run as one task run per slit and join into the cal, s2d
  and x1d (flows/_slit_fanout.py); untracked runs call the steps on the whole model.  Same products.

flat_field takes NIRSpec's f, s and d flats (tasks/_flat_nirspec.py, checked against jwst's step
in tests/test_nirspec_flat.py); the branch comparisons in tests/test_nirspec_spec2.py still skip
flat_field and barshadow on both sides.  msa_flagging and imprint are checked against
jwst's steps in tests/test_nirspec_msa.py.
"""

from __future__ import annotations

from ._slit_fanout import run_slit_steps, with_slits
from .calwebb_spec2 import BRANCHES, Branch

# recorded SKIPPED by jwst's pipeline on every NIRSpec slit product (default-skipped or not this mode's)
_NRS_SKIPPED = ("badpix_selfcal", "msa_flagging", "clean_flicker_noise", "imprint", "bkg_subtract")
# assign_wcs asks CRDS for these on every exposure and jwst records the answers (N/A for NIRSpec slits)
_NRS_EXTRA = {"recorded_reftypes": ("distortion", "filteroffset")}

BRANCHES["NRS_FIXEDSLIT"] = Branch(
    "nirspec-fixedslit",
    ("assign_wcs", "bkg_subtract?", "extract_2d", "srctype", "wavecorr", "flat_field", "pathloss", "photom"),
    resample="resample_spec",
    extract=True,
    marked_skipped=_NRS_SKIPPED + ("barshadow",),
    notes="NIRSpec fixed slits: one cutout per open slit; s2d and x1d per slit",
    extra=_NRS_EXTRA,
)

BRANCHES["NRS_BRIGHTOBJ"] = Branch(
    "nirspec-brightobj",
    ("assign_wcs", "bkg_subtract?", "extract_2d", "srctype", "wavecorr", "flat_field", "photom"),
    resample=None,
    extract=True,
    marked_skipped=_NRS_SKIPPED + ("barshadow", "pathloss"),
    notes="NIRSpec bright-object TSO (S1600A1): the cutout of every integration; calints and x1dints",
    # extract_1d only reads the calints' arrays and evaluates its WCS: the copy it reads shares both
    extra={**_NRS_EXTRA, "later_reads_only": True, "later_shares_wcs": True},
)


def _msa_prepare(model, params, members):
    """jwst's MOS wiring: msa_flagging builds its chain from the WCS references assign_wcs used (jwst
    reads them back from the R_ keywords), and imprint (jwst's imprint_subtract) takes the association's
    imprint members (jwst 3.0 keeps only the first of several for an MSA exposure)."""
    from ..tasks.msa_flagging import WCS_REFTYPES

    if "msa_flagging" in params and "assign_wcs" in params:
        given = params["assign_wcs"].overrides
        mine = dict(params["msa_flagging"].overrides)
        for rt in WCS_REFTYPES:
            if rt in given and rt not in mine:
                mine[rt] = given[rt]
        params["msa_flagging"] = params["msa_flagging"].model_copy(update={"overrides": mine})
    if "master_background_mos" in params:
        _inherit_mbkg_substeps(params)
    imprints = [str(p) for p in members.get("imprint") or []]
    if "imprint" in params and imprints and not params["imprint"].imprint_list:
        params["imprint"] = params["imprint"].model_copy(update={"imprint_list": imprints[:1]})


def _inherit_mbkg_substeps(params):
    """master_background_mos calibrates its background copy with the flow's own flat_field, pathloss,
    barshadow and photom settings (skip, overrides, parameters), as jwst's parent pipeline hands them
    down; what the user gave under the step's own ``steps`` wins."""
    from ..tasks.master_background_mos import inherited_settings

    mine = params["master_background_mos"]
    subs = {k: dict(v) for k, v in mine.steps.items()}
    for name in ("flat_field", "pathloss", "barshadow", "photom"):
        if name in params:
            subs[name] = {**inherited_settings(name, params[name]), **subs.get(name, {})}
    params["master_background_mos"] = mine.model_copy(update={"steps": subs})


# the steps jwst 3.0 runs on the fixed slits of an MSA exposure, after srctype, as an NRS_FIXEDSLIT exposure
MSA_FS_STEPS = ("wavecorr", "flat_field", "pathloss", "photom")
FS = "NRS_FIXEDSLIT"


def _fs_run(part, names, run):
    """``run`` for the fixed slits' part: the same parameters and records, the references CRDS selects for an
    NRS_FIXEDSLIT exposure (jwst's steps ask CRDS again with the part's EXP_TYPE; overrides apply alike)."""
    import dataclasses

    from .stage import resolve_references

    refs, _ctx = resolve_references(part, {n: run.params[n] for n in names})
    return dataclasses.replace(run, references=refs)


def _mos_steps(model, names, run, output_dir, source_name):
    """master_background_mos on all the slitlets (one background from the background slitlets), then the
    per-slit steps (fanned out over the slits in a Prefect flow run)."""
    from .stage import run_steps

    k = names.index("master_background_mos") + 1 if "master_background_mos" in names else 0
    model = run_steps(model, names[:k], run, output_dir=output_dir, source_name=source_name)
    return run_slit_steps(model, names[k:], run, output_dir=output_dir, source_name=source_name)


def _msa_calibrate(model, cal_steps, run, *, output_dir, source_name):
    """jwst 3.0's MOS and fixed-slit split: the steps to srctype on the exposure; then the MSA's slitlets through
    the rest of the branch and the quadrant-5 slits (EXP_TYPE NRS_FIXEDSLIT each) through MSA_FS_STEPS as a
    fixed-slit exposure; joined, the slitlets first, in the slitlets' model (its metadata is the cal's)."""
    from .stage import run_steps

    i = cal_steps.index("srctype") + 1
    model = run_steps(model, cal_steps[:i], run, output_dir=output_dir, source_name=source_name)
    fixed = [s for s in model.slits if s.quadrant == 5]
    if not fixed:
        return _mos_steps(model, cal_steps[i:], run, output_dir, source_name)
    for s in fixed:
        s.meta.exposure.type = FS
    mos = with_slits(model, [s for s in model.slits if s.quadrant != 5])
    if mos.slits:
        mos = _mos_steps(mos, cal_steps[i:], run, output_dir, source_name)
    fs_names = [n for n in MSA_FS_STEPS if n in cal_steps[i:]]
    fs = with_slits(model, fixed, FS)
    fs = run_slit_steps(fs, fs_names, _fs_run(fs, fs_names, run), output_dir=None, source_name=source_name,
                        label="fixed slits")
    mos.slits.extend(fs.slits)
    if len(mos.slits) == len(fs.slits):  # no slitlet: the fixed slits' step statuses are the exposure's
        for n in fs_names:
            setattr(mos.meta.cal_step, n, getattr(fs.meta.cal_step, n))
    return mos


def _numbered(slit) -> bool:
    """An MSA slitlet's name is its number; a fixed slit's is not (jwst tells them apart so after resampling)."""
    try:
        int(slit.name)
    except (TypeError, ValueError):
        return False
    return True


def _msa_extract(model, run, *, source_name):
    """jwst 3.0's extraction of an MSA exposure: its slits split by name, each part extracted with its EXP_TYPE
    (the fixed slits with the NRS_FIXEDSLIT references), the fixed slits' spectra after the slitlets'."""
    mos_slits = [s for s in model.slits if _numbered(s)]
    fs_slits = [s for s in model.slits if not _numbered(s)]
    for s in mos_slits:
        s.meta.exposure.type = "NRS_MSASPEC"
    for s in fs_slits:
        s.meta.exposure.type = FS
    if not fs_slits:
        return run_slit_steps(model, ["extract_1d"], run, source_name=source_name)
    x1d = None
    if mos_slits:
        x1d = run_slit_steps(with_slits(model, mos_slits), ["extract_1d"], run, source_name=source_name)
    fs = with_slits(model, fs_slits, FS)
    x1d_fs = run_slit_steps(fs, ["extract_1d"], _fs_run(fs, ["extract_1d"], run), source_name=source_name,
                            label="fixed slits")
    if x1d is None:
        x1d_fs.meta.exposure.type = "NRS_MSASPEC"
        return x1d_fs
    x1d.spec.extend(x1d_fs.spec)
    return x1d


BRANCHES["NRS_MSASPEC"] = Branch(
    "nirspec-msa",
    ("assign_wcs", "msa_flagging", "imprint", "bkg_subtract?", "extract_2d", "srctype", "master_background_mos",
     "wavecorr", "flat_field", "pathloss", "barshadow", "photom"),
    resample="resample_spec",
    extract=True,
    marked_skipped=("badpix_selfcal", "clean_flicker_noise", "bkg_subtract"),
    notes="NIRSpec MSA: msa_flagging, imprint, then jwst's MOS chain (master_background_mos from the background "
          "slitlets); the fixed slits of an MSA exposure go through the fixed-slit chain, as jwst splits them",
    extra={**_NRS_EXTRA, "prepare": _msa_prepare, "calibrate": _msa_calibrate, "extract": _msa_extract,
           "resample_per_slit": True, "later_shares_wcs": True},
)
