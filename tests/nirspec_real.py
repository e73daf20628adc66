"""The real NIRSpec optical-model references in ../shared/data/real-refs/nirspec that the NIRSpec
WCS and spec2 tests give both programs, and the WCS reference types those tests set to N/A."""

from __future__ import annotations

from conftest import SHARED_DATA

REAL = SHARED_DATA / "real-refs" / "nirspec"
OPTICS = {
    "camera": REAL / "jwst_nirspec_camera_0004.asdf",
    "collimator": REAL / "jwst_nirspec_collimator_0004.asdf",
    "disperser": REAL / "jwst_nirspec_disperser_0034.asdf",
    "fore": REAL / "jwst_nirspec_fore_0028.asdf",
    "fpa": REAL / "jwst_nirspec_fpa_0005.asdf",
    "ote": REAL / "jwst_nirspec_ote_0005.asdf",
    "wavelengthrange": REAL / "jwst_nirspec_wavelengthrange_INFLIGHT2023_from_jwst_tests.asdf",
}
# the WCS reference types a slit exposure does not use
WCS_NA = ("distortion", "filteroffset", "specwcs", "regions", "chromcorr", "ifupost", "ifufore", "ifuslicer")
