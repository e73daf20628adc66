"""``webbflow simulate``: simulated JWST imaging exposures (see :mod:`webbflow.refs.simulator`)."""

from __future__ import annotations

import sys

from ..errors import ParameterError


def add_simulate_command(sub) -> None:
    """Attach ``webbflow simulate`` to the top-level subparsers object ``sub``."""
    s = sub.add_parser(
        "simulate",
        help="simulate uncal exposures of an imaging observation (with its references and CRDS cache)",
        description="Write realistic uncal exposures (Level1bModel) of a dithered imaging observation of "
        "one detector: a seeded star field with a truth catalogue, sky, cosmic rays, and the detector "
        "signatures of the synthetic references (bias, dark, non-linearity, gain, read noise, IPC, flat, "
        "saturation, reference-pixel drifts; MIRI reset/RSCD/first- and last-frame effects), plus level-2 "
        "and level-3 association files. Unless --no-refs, the references and a CRDS cache go into the "
        "same folder: afterwards CRDS_PATH=DIR selects them, for webbflow and for jwst.",
    )
    s.add_argument("--output-dir", "--output_dir", dest="output_dir", required=True, help="folder to write into")
    s.add_argument("--instrument", default="nircam", type=str.lower, choices=("nircam", "niriss", "nirspec", "miri", "fgs"))
    s.add_argument("--detector", default=None,
                   help="NRCA1..NRCB4, NRCALONG, NRCBLONG; NIS; NRS1, NRS2; MIRIMAGE; GUIDER1, GUIDER2 (default: the first)")
    size = s.add_mutually_exclusive_group()
    size.add_argument("--size", type=int, default=None,
                      help="a square GENERIC subarray of N pixels in the corner of the detector (MIRI: 64, 128, "
                      "256, 512 or 1024, its named subarrays); default: full frame")
    size.add_argument("--subarray", default=None, help="a named SIAF subarray, e.g. SUB64P, SUB160, SUB64 (MIRI)")
    s.add_argument("--ngroups", type=int, default=None, help="groups per integration (default 10 full frame, else 5)")
    s.add_argument("--nints", type=int, default=None, help="integrations per exposure (default 1)")
    s.add_argument("--nexp", type=int, default=1, help="number of dithered exposures (default 1)")
    s.add_argument("--seed", type=int, default=0, help="random seed; equal seeds give identical files")
    s.add_argument("--filter", default=None, help="e.g. F200W (NIRCam SW), F444W (LW), F150W (NIRISS), F770W (MIRI)")
    s.add_argument("--grating", default=None, help="NIRSpec grating or PRISM (spectroscopic modes; default per mode)")
    s.add_argument("--slit", default=None, help="NIRSpec fixed slit (NRS_FIXEDSLIT: S200A1; NRS_BRIGHTOBJ: S1600A1; not for NRS_MSASPEC)")
    s.add_argument("--slits", type=int, default=None,
                   help="NRS_MSASPEC: the number of three-shutter slitlets (default 3; up to ~105, a grid over quadrants 3-4)")
    s.add_argument("--band", default=None, help="MIRI MRS grating setting: SHORT, MEDIUM or LONG (default SHORT)")
    s.add_argument("--pupil", default=None, help="NIRCam pupil wheel element (default CLEAR)")
    s.add_argument("--readpatt", default=None, help="readout pattern, e.g. RAPID, BRIGHT2, MEDIUM8, NIS, FASTR1; NIRSpec: NRSRAPID, NRSIRS2RAPID, NRSIRS2")
    s.add_argument("--exp-type", "--exp_type", dest="exp_type", default=None,
                   help="exposure type: FGS guider modes (FGS_ACQ1, FGS_ACQ2, FGS_TRACK, FGS_FINEGUIDE, FGS_ID-IMAGE, "
                   "FGS_ID-STACK); NRC_TSIMAGE, a NIRCam imaging time series with a transit; NRC_CORON; NIS_AMI; and "
                   "the spectroscopic modes under refs/sim/ (default: the instrument's imaging type; NIRCam with "
                   "--pupil WLP8 or WLM8: a WFS&C weak-lens dither pair)")
    s.add_argument("--ra", type=float, default=53.1625, help="target right ascension, deg")
    s.add_argument("--dec", type=float, default=-27.7914, help="target declination, deg")
    s.add_argument("--pa-v3", "--pa_v3", dest="pa_v3", type=float, default=30.0, help="position angle of V3, deg")
    s.add_argument("--program", type=int, default=1234, help="program number (default 1234)")
    s.add_argument("--observation", type=int, default=1, help="observation number (default 1)")
    s.add_argument("--no-refs", "--no_refs", dest="no_refs", action="store_true",
                   help="do not write references and a CRDS cache")
    s.set_defaults(func=cmd_simulate)


def cmd_simulate(args) -> int:
    from .simulator import simulate

    for name in ("ngroups", "nints", "nexp", "size"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ParameterError(f"--{name} must be a positive number (got {v})")
    result = simulate(
        args.output_dir, instrument=args.instrument, detector=args.detector, size=args.size,
        subarray=args.subarray, ngroups=args.ngroups, nints=args.nints, nexp=args.nexp, seed=args.seed,
        filter=args.filter, pupil=args.pupil, readpatt=args.readpatt, exp_type=args.exp_type,
        target_ra=args.ra, target_dec=args.dec, pa_v3=args.pa_v3, program=args.program,
        observation=args.observation, build_refs=not args.no_refs, **({"grating": args.grating} if args.grating else {}),
        **({"slit": args.slit} if args.slit else {}),
        **({"band": args.band} if args.band else {}),
        **({"slits": args.slits} if args.slits is not None else {}),
    )
    for p in result.products:
        print(f"wrote {p}")
    if result.context:
        print(f"CRDS context {result.context} in {result.crds_path} (use CRDS_PATH={result.crds_path})")
    sys.stdout.flush()
    return 0
