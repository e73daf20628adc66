"""combine_1d's output wavelengths (tasks/combine_1d.py ``output_wavelengths``) against jwst 3.0's
``count_input`` and ``compute_output_wl``, bit for bit, on spectra that line up, drift against each
other, run backwards, differ in length and number, or hold a degenerate or constant one."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest

from webbflow.tasks.combine_1d import output_wavelengths


def _jwst(inputs):
    from jwst.combine_1d.combine1d import compute_output_wl, count_input

    wl, n_in = count_input([SimpleNamespace(wavelength=w) for w in inputs])
    return np.sort(compute_output_wl(wl, n_in))


def _cases():
    rng = np.random.default_rng(18)
    base = np.linspace(2.4, 5.0, 900)
    yield "aligned pair", [base, base.copy()]
    yield "aligned five", [base.copy() for _ in range(5)]
    yield "one", [base]
    yield "dithered pair", [base, base + 0.3 * (base[1] - base[0])]
    yield "drifting", [base, base * (1 + 1e-4 * np.linspace(0, 3, base.size))]
    yield "backwards", [base[::-1], base + 1e-3]
    yield "overlapping parts", [base[:600], base[300:] + 4e-4, base[100:800] - 2e-4]
    yield "degenerate and constant", [base, base[:1], np.full(10, 3.0), base + 5e-4]
    # a run of one filled just before the next run's window: the gap filling sees its own fill
    yield "fill next to a fill", [np.array(x) for x in (
        [1.153204, 1.199567, 1.245931, 1.292294, 1.338657, 1.385021], [1.238109, 1.312012, 1.385914],
        [1.164373, 1.22048, 1.276587, 1.332694, 1.388802], [1.135895, 1.225578, 1.315261, 1.404944],
        [1.279391, 1.308769, 1.338147, 1.367525, 1.396904, 1.426282, 1.45566])]
    yield "WFSS-like", [np.linspace(2.41, 5.02, 1180), np.linspace(2.405, 5.015, 1184)]
    for k in range(30):
        n = int(rng.integers(1, 7))
        out = []
        for _ in range(n):
            lo, hi = sorted(rng.uniform(1.0, 6.0, 2))
            size = int(rng.integers(2, 400))
            w = np.linspace(lo, hi + 0.01, size) + rng.normal(0, 1e-3 * rng.uniform(), size) * (k % 3 == 0)
            w = np.sort(w)
            if rng.uniform() < 0.3:
                w = w[::-1]
            if rng.uniform() < 0.4 and out:  # a copy of another spectrum, shifted or not
                w = out[0] + rng.choice([0.0, 1e-5, (out[0][1] - out[0][0]) * rng.uniform()])
            out.append(w)
        yield f"random {k}", out


@pytest.mark.parametrize("name,inputs", list(_cases()), ids=[c[0] for c in _cases()])
def test_output_wavelengths_are_jwsts_bit_for_bit(name, inputs):
    logging.getLogger("jwst").setLevel(logging.ERROR)
    try:
        theirs = _jwst(inputs)
    except RuntimeError:
        with pytest.raises(ValueError):
            output_wavelengths(inputs)
        return
    ours = output_wavelengths(inputs)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    assert np.array_equal(ours, theirs)
