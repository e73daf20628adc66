"""Jump detection by sigma clipping across integrations, a block of rows at a time.

With many integrations (``minimum_sigclip_groups``, 100 by default) jwst's jump step
stops comparing each difference with the ramp's own median and instead sigma-clips,
for every pixel and every group difference, the values that difference takes over
all integrations (over integrations and differences together when
``only_use_ints`` is false).  Done on the whole exposure at once, that holds the
ramp in electrons, its float64 first differences and astropy's masked copies of
them together: about five times the ramp.

Everything in the detection is per pixel except the four-neighbour flagging and
the test for group planes flagged in every pixel, so here the differences are
made and clipped for a block of rows at a time (each block's float64 differences
at most :data:`BLOCK_BYTES`), and the two whole-frame passes recompute one plane
of differences at a time.  The arithmetic is stcal 1.20's, dtypes included:

- the ramp in electrons is ``data * gain`` in float32, NaN where a group is
  DO_NOT_USE or SATURATED; first differences are float32 differences widened to
  float64 (evenly spaced groups: unit time steps);
- each pixel's median difference (NaNs ignored) pools every integration and
  difference, and its sigma is ``sqrt(|median| + (readnoise * gain)**2 /
  nframes)``, NaN where it is zero;
- astropy's ``sigma_clip`` (median centre, standard deviation, five iterations,
  ``rejection_threshold`` both ways) marks the outliers; finite outliers whose
  group is neither SATURATED nor DO_NOT_USE get JUMP_DET;
- a group plane where every pixel is JUMP_DET or DO_NOT_USE loses the flags of
  the pixels that are JUMP_DET alone;
- neighbours of jumps between ``min_jump_to_flag_neighbors`` and
  ``max_jump_to_flag_neighbors`` sigma get JUMP_DET unless SATURATED or
  DO_NOT_USE; JUMP_DET is then cleared where DO_NOT_USE or SATURATED is set.

Sigma clipping converges pixel by pixel (a pixel whose mask stops changing keeps
it), so clipping a block gives each pixel the mask clipping the whole exposure
gives it.
"""

from __future__ import annotations

import warnings

import numpy as np

BLOCK_BYTES = 8 << 20  # float64 first differences of one block of rows


def _electrons(data, gain, gdq, bad):
    """``data * gain`` (float32) with NaN where ``gdq`` has any of the ``bad`` bits."""
    e = data * gain
    e[(gdq & bad) != 0] = np.nan
    return e


def _first_diffs(e):
    """Differences of consecutive groups (axis 1) of a float32 ramp, widened to float64."""
    return np.diff(e, axis=1).astype(np.float64)


def rows_per_block(nints: int, ngroups: int, ncols: int, block_bytes: int | None = None) -> int:
    """Rows whose float64 first differences fit in ``block_bytes`` (default :data:`BLOCK_BYTES`); at least one."""
    per_row = max(1, nints * max(ngroups - 1, 1) * ncols * 8)
    return max(1, (BLOCK_BYTES if block_bytes is None else block_bytes) // per_row)


def detect_sigclip(data, gdq, gain, readnoise, *, nframes, rejection_threshold, only_use_ints,
                   flag_4_neighbors, min_jump_to_flag_neighbors, max_jump_to_flag_neighbors,
                   dnu, sat, jump, block_rows=None) -> int:
    """Flag jumps in ``gdq`` (uint8, updated in place) of a (nints, ngroups, ny, nx) float32 ramp in DN.

    ``gain`` (e/DN) and ``readnoise`` (DN) are 2-D float32.  ``data`` is not modified.
    Returns the number of JUMP_DET group flags after clipping (stcal's count of primary
    cosmic rays, taken before the neighbours are flagged).
    """
    from astropy import stats

    nints, ngroups, ny, nx = data.shape
    bad = np.uint8(dnu | sat)
    jump8 = np.uint8(jump)
    rn2 = (readnoise * gain) ** 2  # float32, as stcal squares the read noise in electrons
    median_diffs = np.empty((ny, nx), np.float64)
    if block_rows is None:
        block_rows = rows_per_block(nints, ngroups, nx)
    axis = 0 if only_use_ints else (0, 1)

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        warnings.filterwarnings("ignore", message=".*invalid values.*")
        for r0 in range(0, ny, block_rows):
            r1 = min(ny, r0 + block_rows)
            g = gdq[:, :, r0:r1]
            fd = _first_diffs(_electrons(data[:, :, r0:r1], gain[r0:r1], g, bad))
            for k in range(r1 - r0):  # row by row, as the median is taken over the whole exposure
                np.nanmedian(fd[:, :, k, :], axis=(0, 1), out=median_diffs[r0 + k])
            clipped = stats.sigma_clip(fd, sigma=rejection_threshold, axis=axis, masked=True)
            hit = np.ma.getmaskarray(clipped)
            del clipped
            hit &= np.isfinite(fd)
            del fd
            hit &= (g[:, 1:] & bad) == 0
            g[:, 1:] |= hit.view(np.uint8) * jump8
            del hit

    # a plane flagged JUMP_DET or DO_NOT_USE everywhere: its JUMP_DET-only pixels lose the flag
    either = np.uint8(jump | dnu)
    for i in range(nints):
        for k in range(ngroups):
            plane = gdq[i, k]
            if np.all((plane & either) != 0):
                plane[plane == jump8] = 0

    n_crs = int(sum(np.count_nonzero(gdq[i] & jump8) for i in range(nints)))

    if flag_4_neighbors:
        # float64 from here on: unit group spacing, 2 * nframes reads in a difference
        sigma = np.sqrt(np.abs(median_diffs) + rn2.astype(np.float64) / (0.5 * (2.0 * nframes)))
        sigma[sigma == 0.0] = np.nan
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=RuntimeWarning)
            for i in range(nints):
                prev = _electrons(data[i, 0], gain, gdq[i, 0], bad)
                for k in range(1, ngroups):
                    cur = _electrons(data[i, k], gain, gdq[i, k], bad)
                    d = (cur - prev).astype(np.float64)
                    prev = cur
                    ratio = np.abs(d - median_diffs) / sigma
                    plane = gdq[i, k]
                    flag = (ratio < max_jump_to_flag_neighbors) & (ratio > min_jump_to_flag_neighbors)
                    flag &= (plane & jump8) != 0
                    grown = flag.copy()
                    grown[1:] |= flag[:-1]
                    grown[:-1] |= flag[1:]
                    grown[:, 1:] |= flag[:, :-1]
                    grown[:, :-1] |= flag[:, 1:]
                    grown &= (plane & bad) == 0
                    plane[grown] |= jump8

    # JUMP_DET is redundant where DO_NOT_USE or SATURATED is set
    for i in range(nints):
        gi = gdq[i]
        gi[(gi & either) == either] ^= jump8
        js = np.uint8(jump | sat)
        gi[(gi & js) == js] ^= jump8
    return n_crs
