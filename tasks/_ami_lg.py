"""The image-plane fringe model of NIRISS AMI and its linear fit (the "LG" algorithm).

The non-redundant mask has seven hexagonal holes.  The image of a point source through it is
the squared modulus of the sum of the holes' amplitude transforms: a hexagon's transform (the
"primary beam" envelope) times one cosine and one sine fringe per baseline.  The model is
linear in a DC term, 21 cosine and 21 sine coefficients and a constant offset (44 terms), so a
single least-squares solve of the centred image gives each baseline's fringe amplitude and phase.
Everything here is plain numpy on arrays; :mod:`ami_analyze` drives it.

Conventions follow jwst 3.0's ami package so that the numbers agree: array axis 0 pairs with a
hole's first coordinate, the centre of an ``n``-pixel axis is ``n/2 - 1/2``, and the model is
built oversampled and summed back to detector pixels.
"""

from __future__ import annotations

import numpy as np

# hole names of the NIRISS mask, in the order of the nrm reference's NRM_X_A1..A7
HOLE_NAMES = ("B4", "C2", "B5", "B2", "C1", "B6", "C6")


class Affine2d:
    """A linear distortion of the pupil (magnification, shear, rotation) as jwst's ami step uses it.

    With ``rotradccw`` it is a pure counter-clockwise rotation.  ``distort`` maps image-plane
    frequency coordinates, ``phase`` is the tilt a pupil offset (``xo``, ``yo``) adds.
    """

    def __init__(self, mx=1.0, my=1.0, sx=0.0, sy=0.0, xo=0.0, yo=0.0, rotradccw=None, name="Affine"):
        self.rotradccw = rotradccw
        if rotradccw is not None:
            mx = my = np.cos(rotradccw)
            sx, sy = -np.sin(rotradccw), np.sin(rotradccw)
            xo = yo = 0.0
        self.mx, self.my, self.sx, self.sy, self.xo, self.yo = mx, my, sx, sy, xo, yo
        self.name = name
        self.determinant = mx * my - sx * sy
        self.phase_vector = np.array((my * xo - sx * yo, mx * yo - sy * xo)) / self.determinant

    def distort(self, u, v):
        det = self.determinant
        return (self.my * u - self.sy * v) / det, (-self.sx * u + self.mx * v) / det

    def phase(self, u, v):
        return np.exp(2 * np.pi * 1j / self.determinant * (self.phase_vector[0] * u + self.phase_vector[1] * v))


def rotate_ccw(vectors, theta):
    """Rotate 2-vectors (rows of ``vectors``) counter-clockwise by ``theta`` radians."""
    c, s = np.cos(theta), np.sin(theta)
    v = np.asarray(vectors, dtype=float)
    return np.array([[c * x - s * y, s * x + c * y] for x, y in v])


def hole_centres(nrm, chooseholes=None):
    """The holes' centres (metres, in the model's frame) from an nrm reference's keywords."""
    designed = np.array([[getattr(nrm, f"x_a{i}"), getattr(nrm, f"y_a{i}")] for i in range(1, 8)], dtype=float)
    if chooseholes:
        wanted = [str(h).upper() for h in chooseholes]
        designed = designed[[HOLE_NAMES.index(h) for h in wanted]]
    built = designed.copy()
    built[:, 0] *= -1
    return rotate_ccw(built, np.pi / 2.0)


def centre_of(shape):
    return 0.5 * shape[0] - 0.5, 0.5 * shape[1] - 0.5


def image_centre(fov, over, psf_offset):
    c = np.array(centre_of((over * fov, over * fov)))
    return c + np.array((psf_offset[1], psf_offset[0])) * over


def _grid(n):
    return np.indices((n, n), dtype=float)


def hex_transform(n, d, lam, pitch, affine, centre):
    """The amplitude transform of one hexagonal hole of flat-to-flat ``d`` on an ``n``x``n`` grid
    of angular ``pitch`` (radians per sample) at wavelength ``lam``, centred on ``centre``.

    The analytic transform (Sabatke et al. 2005) is a sum of exponentials of linear functions of
    the distorted frequency coordinates, each the outer product of two 1-D exponentials, over a
    polynomial; the hexagon is the sum of the formula and its mirror image in the first axis."""
    c = list(centre)
    eps = 1e-8
    for k in (0, 1):  # the formula is 0/0 on the exact centre: step off it
        if abs(c[k] - int(c[k])) < 0.5 * eps:
            c[k] = c[k] + eps
    s = d / lam * pitch
    x0 = s * (np.arange(n) - c[0])
    x1 = s * (np.arange(n) - c[1])
    det = affine.determinant
    # distorted coordinates: xi' = a0 x0 + a1 x1, eta' = b0 x0 + b1 x1
    a0, a1 = affine.my / det, -affine.sy / det
    b0, b1 = -affine.sx / det, affine.mx / det
    xi = a0 * x0[:, None] + a1 * x1[None, :]
    eta = b0 * x0[:, None] + b1 * x1[None, :]
    r3 = np.sqrt(3)

    def ex(p, q):  # exp(i pi (p xi' + q eta')) as an outer product
        return np.outer(np.exp(1j * np.pi * (p * a0 + q * b0) * x0), np.exp(1j * np.pi * (p * a1 + q * b1) * x1))

    g = np.zeros((n, n), complex)
    with np.errstate(divide="ignore", invalid="ignore"):
        for sgn in (1.0, -1.0):  # the formula and its mirror image (xi' -> -xi')
            x = sgn * xi
            num = ((r3 * eta - 3 * x) * (ex(-sgn, 1 / r3) - ex(0, 2 / r3))
                   + (r3 * eta + 3 * x) * (ex(-sgn, -1 / r3) - ex(0, -2 / r3)))
            g += num / (4 * np.pi * np.pi * (eta * eta * eta - 3 * eta * x * x))
        if np.any(affine.phase_vector != 0):
            g *= affine.phase(x0[:, None] + 0 * x1[None, :], x1[None, :] + 0 * x0[:, None])
    g[int(centre[0]), int(centre[1])] = np.sqrt(3) / 2.0
    return g


def baseline_pairs(nholes):
    return [(i, j) for i in range(nholes) for j in range(i + 1, nholes)]


def bin_down(a, over):
    """Sum ``over`` x ``over`` blocks (oversampled model to detector pixels)."""
    n0, n1 = a.shape[0] // over, a.shape[1] // over
    return a.reshape(n0, over, n1, over).sum(-1).sum(1)


def _bin_last(a, over):
    """Sum consecutive groups of ``over`` along the last axis (the additions of ``sum(-1)``, in order)."""
    a = a.reshape(a.shape[:-1] + (a.shape[-1] // over, over))
    out = a[..., 0].copy()
    for k in range(1, over):
        out += a[..., k]
    return out


def fringe_model(ctrs, bandpass, over, pitch, fov, d, psf_offset, affine):
    """(fov, fov, N(N-1)+2) model planes: the beam times each fringe term, and a constant plane,
    weighted over the bandpass rows ``(weight, wavelength_m)``.

    A fringe's phase is linear in the two pixel indices, so ``exp(i phase)`` is the outer product
    of two 1-D exponentials, ``e0`` along the rows and ``e1`` along the columns.  Summed to
    detector pixels, beam x fringe is then ``sum over a block's rows of e0 x (sum over its
    columns of beam x e1)``: the columns are binned first, for all baselines at once, and the
    rows after (the real and imaginary parts are the cosine and sine planes), which never forms
    the fringe on the whole oversampled grid."""
    nholes = len(ctrs)
    pairs = baseline_pairs(nholes)
    nterm = nholes * (nholes - 1) + 2
    n = fov * over
    model = np.zeros((fov, fov, nterm))
    cen = image_centre(fov, over, psf_offset)
    d0 = np.arange(n) - cen[0]
    d1 = np.arange(n) - cen[1]
    det = affine.determinant
    cpitch = pitch / over
    b = np.array([ctrs[i] - ctrs[j] for i, j in pairs], dtype=float).reshape(-1, 2)
    for w, lam in bandpass:
        beam = hex_transform(n, d, lam, cpitch, affine, cen)
        beam = (beam * beam.conj()).real
        planes = np.empty((fov, fov, nterm))
        planes[:, :, 0] = nholes * bin_down(beam, over)
        if len(pairs):
            f = 2 * np.pi * cpitch / lam
            # phase = f * (u b0 + v b1), u = (my d0 - sy d1)/det, v = (-sx d0 + mx d1)/det
            a0 = f * (affine.my * b[:, 0] - affine.sx * b[:, 1]) / det
            a1 = f * (-affine.sy * b[:, 0] + affine.mx * b[:, 1]) / det
            ph0 = a0[:, None] * d0[None, :]  # (baselines, n): e0 = exp(i ph0) along rows, e1 along columns
            ph1 = a1[:, None] * d1[None, :]
            # the columns binned, real and imaginary parts apart: (baselines, n, fov) each
            cr = _bin_last(beam[None, :, :] * np.cos(ph1)[:, None, :], over)
            ci = _bin_last(beam[None, :, :] * np.sin(ph1)[:, None, :], over)
            c0, s0 = np.cos(ph0)[:, :, None], np.sin(ph0)[:, :, None]
            re = _bin_last((cr * c0 - ci * s0).transpose(0, 2, 1), over)  # (baselines, fov(cols), fov(rows))
            im = _bin_last((cr * s0 + ci * c0).transpose(0, 2, 1), over)
            planes[:, :, 1:2 * len(pairs) + 1:2] = 2 * re.transpose(2, 1, 0)
            planes[:, :, 2:2 * len(pairs) + 2:2] = 2 * im.transpose(2, 1, 0)
        planes[:, :, -1] = over * over
        model += w * planes
    return model


def psf_image(ctrs, bandpass, over, pitch, fov, d, psf_offset, affine, phases=None):
    """A polychromatic point-source image through the mask (the squared modulus of the sum of the
    holes' transforms), summed to detector pixels."""
    n = fov * over
    cen = image_centre(fov, over, psf_offset)
    k0, k1 = _grid(n)
    u, v = affine.distort(k0 - cen[0], k1 - cen[1])
    cpitch = pitch / over
    phases = np.zeros(len(ctrs)) if phases is None else phases
    out = np.zeros((n, n))
    for w, lam in bandpass:
        env = hex_transform(n, d, lam, cpitch, affine, cen)
        sumh = np.zeros((n, n), dtype=complex)
        for h, c in enumerate(ctrs):
            sumh += np.exp(-2j * np.pi * ((cpitch * c[0] * u + cpitch * c[1] * v) / lam + phases[h] / lam))
        a = env * sumh
        out += w * (a * a.conj()).real
    return bin_down(out, over)


def solve(image, model, mask=None):
    """Least-squares coefficients of ``model`` planes for ``image`` (pixels in ``mask`` left out),
    and the residual image (NaN where left out)."""
    flat = image.reshape(-1)
    a = model.reshape(-1, model.shape[2])
    keep = np.ones(flat.size, bool) if mask is None else ~np.asarray(mask, bool).reshape(-1)
    b = flat[keep]
    a = a[keep]
    at = a.T
    x = np.dot(np.linalg.inv(np.dot(at, a)), np.dot(at, b))
    res = np.full(flat.size, np.nan)
    res[keep] = b - np.dot(a, x)
    return x, res.reshape(image.shape)


# -- observables from the fitted coefficients -------------------------------


def amplitudes_phases(coeffs):
    """Fringe amplitude and phase per baseline from normalised cos/sin coefficients."""
    nb = (len(coeffs) - 1) // 2
    c = np.asarray(coeffs)
    cos_, sin_ = c[1:2 * nb + 1:2], c[2:2 * nb + 2:2]
    return np.sqrt(sin_ ** 2 + cos_ ** 2), np.arctan2(sin_, cos_)


def _pair_matrix(values, n, antisymmetric):
    m = np.zeros((n, n))
    k = 0
    for i in range(n - 1):
        m[i, i + 1:] = values[k:k + n - 1 - i]
        k += n - 1 - i
    return m - m.T if antisymmetric else m + m.T


def _triples(n):
    return [(i, j, k) for i in range(n) for j in range(i + 1, n) for k in range(j + 1, n)]


def _quads(n):
    return [(i, j, k, q) for i in range(n) for j in range(i + 1, n) for k in range(j + 1, n) for q in range(k + 1, n)]


def closure_phases(phases, n=7):
    p = _pair_matrix(phases, n, True)
    return np.array([p[i, j] + p[j, k] + p[k, i] for i, j, k in _triples(n)])


def triple_amplitudes(amps, n=7):
    a = _pair_matrix(amps, n, False)
    return np.array([a[i, j] * a[j, k] * a[k, i] for i, j, k in _triples(n)])


def closure_amplitudes(amps, n=7):
    a = _pair_matrix(amps, n, False)
    return np.array([a[i, j] * a[q, k] / (a[i, k] * a[j, q]) for i, j, k, q in _quads(n)])


def quad_phases(phases, n=7):
    p = _pair_matrix(phases, n, True)
    return np.array([p[i, j] + p[q, k] - p[i, k] - p[j, q] for i, j, k, q in _quads(n)])


def pistons(phases, n):
    """Hole pistons (radians) from the baseline phases, by the pseudo-inverse of the baseline matrix."""
    a = np.zeros((n * (n - 1) // 2, n))
    for row, (i, j) in enumerate(baseline_pairs(n)):
        a[row, i], a[row, j] = -1, 1
    return np.dot(np.linalg.pinv(a), phases)


# -- image centring -------------------------------------------------------


def matrix_dft(plane, nlam_d, npix):
    """A matrix Fourier transform of ``plane`` onto ``npix`` samples spanning ``nlam_d`` resolution
    elements, both grids centred between pixels (the 'adjustable' centring with no offset)."""
    ny, nx = plane.shape
    du, dv = nlam_d / float(npix), nlam_d / float(npix)
    xs = (np.arange(nx) - float(nx) / 2.0 + 0.5) / float(nx)
    ys = (np.arange(ny) - float(ny) / 2.0 + 0.5) / float(ny)
    us = (np.arange(npix) - float(npix) / 2.0 + 0.5) * du
    vs = (np.arange(npix) - float(npix) / 2.0 + 0.5) * dv
    exp_xu = np.exp(-2.0 * np.pi * 1j * np.outer(xs, us))
    exp_yv = np.exp(-2.0 * np.pi * 1j * np.outer(ys, vs)).T
    norm = np.sqrt(nlam_d * nlam_d / (ny * nx * npix * npix))
    return norm * np.dot(np.dot(exp_yv, plane), exp_xu)


def _phase_slopes(ph):
    up, dn, right, left = (np.zeros(ph.shape) for _ in range(4))
    up[:, 1:] = ph[:, :-1]
    dn[:, :-1] = ph[:, 1:]
    right[1:, :] = ph[:-1, :]
    left[:-1, :] = ph[1:, :]
    tilts = ((right - left) / 2.0, (up - dn) / 2.0)
    c0, c1 = (int(x) for x in centre_of(ph.shape))
    out = []
    for axis, t in enumerate(tilts):
        core = t[c0 - 1:c0 + 1, c1 - 1:c1 + 1]
        good = np.abs(t - core.mean()) < 5 * core.std()
        out.append(ph.shape[axis] / (2.0 * np.pi) * t[good].mean())
    return tuple(out)


def centroid(image):
    """The image's offset from its centre (row, column), from the slope of its Fourier phase."""
    cv = matrix_dft(image, image.shape[0], image.shape[0])
    return _phase_slopes(np.angle(cv))


def cross_correlation_peak(a, b):
    """The peak of the normalised cross-correlation of two images of the same shape."""
    fac = np.sqrt(a.shape[0] * a.shape[1])
    fa, fb = np.fft.fft2(a) / fac, np.fft.fft2(b) / fac
    c = np.fft.fftshift(np.fft.ifft2(fa * fb.conj()) * fac * fac)
    return (c / (np.sqrt((a * a).sum()) * np.sqrt((b * b).sum()))).real.max()
