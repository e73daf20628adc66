"""The NIRSpec ``msa`` reference, synthesised in the form of the real CRDS file.

No real ``msa`` reference is at hand, so it is built from the MSA positions that ESA delivered for
the SIAF (pysiaf's ``source_data/NIRSpec/delivery/positionsSIAFApertures.fits``: corners of every
fixed slit and of each MSA quadrant, in metres on the MSA plane).

The file has jwst's layout (stdatamodels' ``msa`` schema, MSAModel): ``Q1``..``Q5``, each with

- ``data``: a table with one row per shutter (Q1-Q4) or fixed slit (Q5), columns ``NO`` (shutter
  number, 1-based in Q1-Q4; 0..4 for S200A1, S200A2, S400A1, S1600A1, S200B1 in Q5), ``XC``, ``YC``
  (the centre, in the quadrant's frame, metres) and ``SIZEX``, ``SIZEY`` (the open area, metres);
- ``model``: the quadrant's frame -> MSA coordinates (metres).

jwst maps a slit's relative position (x, y in [-0.5, 0.5]) to the MSA as
``Scale(SIZEX) & Scale(SIZEY) | Shift(XC) & Shift(YC) | model``.

- Q5 (fixed slits): centre and size from each slit's four corners; the quadrant model is the
  identity, so XC, YC are MSA coordinates.
- Q1-Q4: 365 columns x 171 rows of shutters on the quadrant's SIAF outline; shutter n (1-based)
  sits at column (n-1) % 365, row (n-1) // 365.  The pitch is the outline over the shutter count;
  the open area is the pitch divided by (1.35, 1.15), the ratios jwst falls back on
  (``MSA_SLIT_SCALES``) and reads back from this table (pitch / size).  The quadrant model is the
  shift to the centre of shutter 1.

Only the PRISM's ``disperser`` reference is at hand; :func:`disperser_reference` writes a grating's (all six)
in the same form (stdatamodels' DisperserModel: ``groovedensity``, the mounting angles
``theta_x``, ``theta_y``, ``theta_z``, ``tilt_y`` in degrees, ``tilt_x``, the GWA tilt sensors'
calibrations ``gwa_tiltx``/``gwa_tilty`` and the wavelength bounds ``wbound``).  G395H's numbers
come from ESA's functional model (``fixed_slits_functional_ESA_v4_20180618.txt``, the planes at the
grating): the groove density is the grating law between the GWA entrance and exit direction
cosines (identical at all five wavelengths), and the angles are the rotation that takes the
collimator's exit direction cosines to the GWA entrance ones (exact to 1e-16 on the five rows).
The tilt sensor models are flat (no correction from GWA_XTIL/GWA_YTIL).

Only the CLEAR ``fore`` reference is at hand; :func:`fore_reference` writes a filter's from ESA's
optical model of the fore optics for that filter, as pysiaf ships it
(``source_data/NIRSpec/delivery/Fore_<filter>.pcf``: the paraxial part -- input and output rotation
centres, a rotation and two scale factors -- and 5th-order forward and backward polynomials, each with
a wavelength term).  In jwst's form the forward model runs MSA -> OTE image plane (the file's
*backward* direction): the backward polynomials plus the wavelength times their wavelength term, then
the shift by minus the output centre, the rotation and the division by the factors (one affine
transform), and the shift by the input centre; its inverse runs the other way with the forward
polynomials.  The file's own distortion maps (961 points) check the conventions: its forward
direction reproduces them exactly (2e-17 m).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

FIXED_SLITS = ("S200A1", "S200A2", "S400A1", "S1600A1", "S200B1")
SHUTTER_COLUMNS, SHUTTER_ROWS = 365, 171
OPEN_FRACTION = (1.35, 1.15)  # shutter pitch / open size, x and y
SHUTTER_DTYPE = [("NO", "<i4"), ("XC", "<f8"), ("YC", "<f8"), ("SIZEX", "<f8"), ("SIZEY", "<f8")]


def siaf_msa_positions() -> dict[str, np.ndarray]:
    """SIAF aperture name -> its four corners on the MSA, shape (4, 2), metres (ESA's delivery file)."""
    import os

    import pysiaf
    from astropy.io import fits

    path = Path(os.path.dirname(pysiaf.__file__)) / "source_data" / "NIRSpec" / "delivery" / "positionsSIAFApertures.fits"
    with fits.open(path) as hdul:
        table = hdul["POSITIONS"].data
        out = {}
        for row in table:
            corners = [(float(row[f"C{i}_XPOSMSA"]), float(row[f"C{i}_YPOSMSA"])) for i in range(1, 5)]
            out[str(row["SIAF_NAME"]).strip()] = np.array(corners, dtype=np.float64)
    return out


def _fixed_slit_table(pos) -> np.ndarray:
    data = np.zeros(len(FIXED_SLITS), dtype=SHUTTER_DTYPE)
    for i, name in enumerate(FIXED_SLITS):
        c = pos[f"NRS_{name}_SLIT"]
        x0, x1 = c[:, 0].min(), c[:, 0].max()
        y0, y1 = c[:, 1].min(), c[:, 1].max()
        data[i] = (i, 0.5 * (x0 + x1), 0.5 * (y0 + y1), x1 - x0, y1 - y0)
    return data


def _quadrant(corners: np.ndarray):
    from astropy.modeling.models import Shift

    x0, x1 = corners[:, 0].min(), corners[:, 0].max()
    y0, y1 = corners[:, 1].min(), corners[:, 1].max()
    px, py = (x1 - x0) / SHUTTER_COLUMNS, (y1 - y0) / SHUTTER_ROWS
    n = SHUTTER_COLUMNS * SHUTTER_ROWS
    data = np.zeros(n, dtype=SHUTTER_DTYPE)
    idx = np.arange(n)
    data["NO"] = idx + 1
    data["XC"] = (idx % SHUTTER_COLUMNS) * px
    data["YC"] = (idx // SHUTTER_COLUMNS) * py
    data["SIZEX"] = px / OPEN_FRACTION[0]
    data["SIZEY"] = py / OPEN_FRACTION[1]
    model = Shift(x0 + 0.5 * px) & Shift(y0 + 0.5 * py)
    return data, model


def msa_reference():
    """The ``msa`` reference model (MSAModel) built from ESA's SIAF positions."""
    from astropy.modeling.models import Identity

    from ..models import MSAModel
    from .synthetic import reference_provenance

    pos = siaf_msa_positions()
    m = MSAModel()
    tree = {}
    for q in range(1, 5):
        data, model = _quadrant(pos[f"NRS_FULL_MSA{q}"])
        tree[f"Q{q}"] = {"data": data, "model": model}
    tree["Q5"] = {"data": _fixed_slit_table(pos), "model": Identity(2)}
    m.set_tree(**tree)
    meta = reference_provenance(m, "msa", "NIRSpec MSA shutter and fixed-slit positions from ESA's SIAF")
    meta.instrument.name = "NIRSPEC"
    meta.instrument.p_detector = "NRS1|NRS2|"
    meta.exposure.type = "N/A"
    meta.exposure.p_exptype = "NRS_FIXEDSLIT|NRS_MSASPEC|NRS_BRIGHTOBJ|NRS_IFU|NRS_LAMP|NRS_AUTOWAVE|NRS_AUTOFLAT|"
    meta.input_units = "m"
    meta.output_units = "m"
    return m


def write_msa_reference(path) -> Path:
    """Write the ``msa`` reference (ASDF) to ``path``; returns the path."""
    path = Path(path)
    msa_reference().save(path)
    return path


# grating -> (groove density in lines per metre, [theta_x, theta_y, theta_z, tilt_y] in degrees, wbound in metres).
# G395H is fitted to ESA's functional model (see the module).  The grating law depends on lambda x density alone, so
# an H grating with G395H's mounting and density 89408.7 x 4.07 um / (its band's middle) puts its band where G395H
# puts 2.87-5.27 um (the bands from the in-flight wavelengthrange: G140 0.97-1.89 with F100LP, G235 1.66-3.17).  The
# M gratings have the H density / 2.7 (R ~ 1000 against ~ 2700: G395M disperses 1.8 nm per pixel, G395H 0.68) and a
# facet tilt (tilt_y) that puts the band's middle of S200A1 at NRS1 column 1024, solved through the optical chain
# (the same for the three: lambda x density is the same at their middles); the band spans columns ~310-1740.
_G395H_ANGLES = [0.023493841191423663, 0.02334118722485649, -0.42973950633287233]
_M_TILT_Y = -4.842193959016032
GRATINGS = {
    "G395H": (89408.7, [*_G395H_ANGLES, -8.863780924493742], [2.87e-06, 5.27e-06]),
    "G235H": (150680.5, [*_G395H_ANGLES, -8.863780924493742], [1.66e-06, 3.17e-06]),
    "G140H": (254470.9, [*_G395H_ANGLES, -8.863780924493742], [7.0e-07, 1.89e-06]),
    "G395M": (33114.3, [*_G395H_ANGLES, _M_TILT_Y], [2.87e-06, 5.27e-06]),
    "G235M": (55807.6, [*_G395H_ANGLES, _M_TILT_Y], [1.66e-06, 3.17e-06]),
    "G140M": (94248.5, [*_G395H_ANGLES, _M_TILT_Y], [7.0e-07, 1.89e-06]),
}


FORE_FILTERS = ("F070LP", "F100LP", "F170LP", "F290LP", "F110W", "F140X", "CLEAR")


def _pcf_path(name: str) -> Path:
    import os

    import pysiaf

    return Path(os.path.dirname(pysiaf.__file__)) / "source_data" / "NIRSpec" / "delivery" / name


def read_pcf(path) -> dict[str, np.ndarray]:
    """ESA's optical-module file (.pcf): ``*KEY`` lines, each followed by rows of numbers (others kept as text)."""
    sections: dict[str, list[str]] = {}
    key = None
    for line in Path(path).read_text().splitlines():
        if line.startswith("*"):
            key = line[1:].split()[0]
            sections[key] = []
        elif key is not None and line.strip():
            sections[key].append(line)
    out = {}
    for k, rows in sections.items():
        try:
            out[k] = np.array([[float(v) for v in r.split()] for r in rows])
        except ValueError:
            out[k] = np.array(rows, dtype=object)
    return out


def _poly(coeffs, name):
    """A 5th-order Polynomial2D from a .pcf coefficient row (x power outer, y power inner)."""
    from astropy.modeling.models import Polynomial2D

    p = Polynomial2D(5, name=name)
    k = 0
    for i in range(6):
        for j in range(6 - i):
            setattr(p, f"c{i}_{j}", float(coeffs[k]))
            k += 1
    return p


def _with_wavelength(base, dist):
    """(x, y, lam) -> base(x, y) + lam * dist(x, y)."""
    from astropy.modeling.models import Identity, Mapping

    return ((Mapping((0, 1), n_inputs=3) | base) + (Mapping((0, 1), n_inputs=3) | dist)
            * (Mapping((2,)) | Identity(1)))


def fore_model(pcf: dict):
    """The fore optics' transform in jwst's form (MSA (x, y, lam) -> OTE image plane (x, y)) from a .pcf's content."""
    from astropy.modeling.models import AffineTransformation2D, Identity, Mapping, Shift

    fx, fy = (float(v) for v in pcf["Factor"][0])
    rot = np.deg2rad(float(pcf["Rotation"][0, 0]))
    cin = [float(v) for v in pcf["InputRotationCentre"][0]]
    cout = [float(v) for v in pcf["OutputRotationCentre"][0]]
    c, s = math.cos(rot), math.sin(rot)
    to_sky = np.array([[c, -s], [s, c]]) @ np.diag([1.0 / fx, 1.0 / fy])
    xb, yb = pcf["xBackwardCoefficients"], pcf["yBackwardCoefficients"]
    xf, yf = pcf["xForwardCoefficients"], pcf["yForwardCoefficients"]
    split = Mapping((0, 1, 2, 0, 1, 2), name="fore_inmap")
    forward = (split
               | _with_wavelength(_poly(xb[0], "fore_x_forw"), _poly(xb[1], "fore_x_forwdist"))
               & _with_wavelength(_poly(yb[0], "fore_y_forw"), _poly(yb[1], "fore_y_forwdist"))
               | Identity(2, name="fore_outmap")
               | Shift(-cout[0], name="fore_xincen_d2s") & Shift(-cout[1], name="fore_yincen_d2s")
               | AffineTransformation2D(matrix=to_sky, name="fore_affine_d2s")
               | Shift(cin[0], name="fore_xoutcen_d2s") & Shift(cin[1], name="fore_youtcen_d2s"))
    backward = ((Shift(-cin[0], name="fore_xoutcen_s2d") & Shift(-cin[1], name="fore_youtcen_s2d")
                 | AffineTransformation2D(matrix=np.linalg.inv(to_sky), name="fore_affine_s2d")
                 | Shift(cout[0], name="fore_xincen_s2d") & Shift(cout[1], name="fore_yincen_s2d")) & Identity(1)
                | Mapping((0, 1, 2, 0, 1, 2))
                | _with_wavelength(_poly(xf[0], "fore_x_back"), _poly(xf[1], "fore_x_backdist"))
                & _with_wavelength(_poly(yf[0], "fore_y_back"), _poly(yf[1], "fore_y_backdist"))
                | Identity(2))
    forward.inverse = backward
    return forward


def fore_reference(filt: str):
    """A filter's ``fore`` reference (FOREModel) built from ESA's Fore_<filter>.pcf (see the module)."""
    from ..models import FOREModel
    from .synthetic import reference_provenance

    filt = filt.upper()
    if filt not in FORE_FILTERS:
        raise ValueError(f"no fore optics model for filter {filt!r} (have {', '.join(FORE_FILTERS)})")
    m = FOREModel()
    m.set_tree(model=fore_model(read_pcf(_pcf_path(f"Fore_{filt}.pcf"))))
    meta = reference_provenance(m, "fore", f"NIRSpec {filt} fore optics from ESA's model (Fore_{filt}.pcf)")
    meta.instrument.name = "NIRSPEC"
    meta.instrument.filter = filt
    meta.instrument.p_detector = "NRS1|NRS2|"
    meta.exposure.type = "N/A"
    meta.exposure.p_exptype = "NRS_FIXEDSLIT|NRS_MSASPEC|NRS_BRIGHTOBJ|NRS_IFU|NRS_LAMP|NRS_AUTOWAVE|NRS_AUTOFLAT|"
    return m


def disperser_reference(grating: str):
    """A grating's ``disperser`` reference (DisperserModel) in the form of the real CRDS file."""
    from astropy.modeling.models import Polynomial1D

    from ..models import DisperserModel
    from .synthetic import reference_provenance

    grating = grating.upper()
    if grating not in GRATINGS:
        raise ValueError(f"no disperser model for grating {grating!r} (have {', '.join(GRATINGS)})")
    density, (tx, ty, tz, tilt_y), wbound = GRATINGS[grating]
    m = DisperserModel()

    def sensor():
        return {"temperatures": [37.17], "tilt_model": Polynomial1D(1, c0=0.0, c1=0.0), "unit": "arcsec",
                "zeroreadings": [0.0]}

    m.set_tree(groovedensity=density, theta_x=tx, theta_y=ty, theta_z=tz, tilt_x=0.0, tilt_y=tilt_y,
               gwa_tiltx=sensor(), gwa_tilty=sensor(), wbound=list(wbound))
    meta = reference_provenance(m, "disperser", f"NIRSpec {grating} disperser fitted to ESA's functional model")
    meta.instrument.name = "NIRSPEC"
    meta.instrument.grating = grating
    meta.instrument.p_detector = "NRS1|NRS2|"
    meta.exposure.type = "N/A"
    meta.exposure.p_exptype = "NRS_FIXEDSLIT|NRS_MSASPEC|NRS_BRIGHTOBJ|NRS_IFU|NRS_LAMP|NRS_AUTOWAVE|NRS_AUTOFLAT|"
    meta.groovedensity_unit = "1/m"  # jwst's disperser files give the groove density per metre
    return m
