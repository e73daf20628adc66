"""What a flow run shows in Prefect: artifacts with step timings, DQ statistics,
the references used, and a quick-look image of each 2-D product.

Every stage flow calls :func:`publish_stage` once at its end.  Inside a Prefect
flow run it publishes:

- a **table** of the steps: status, seconds, and the reference files each used;
- a **table** of DQ statistics per product: the fraction of pixels flagged
  DO_NOT_USE, SATURATED, JUMP_DET, any flag, and the fraction of NaN values;
- a **markdown** summary: exposure, CRDS context, reference file per reftype,
  products written, with the quick-look embedded as a small thumbnail;
- a **table** of the resolved step parameters;
- a **markdown** quick-look of each 2-D product, the picture itself (not a link to the worker's disk).

A quick-look PNG (8-bit grayscale, asinh stretch between the 0.5 and 99.5
percentiles, block-averaged to at most 512 pixels, in detector orientation
with row 0 at the bottom as DS9 shows it) is written next to every 2-D
product saved to disk: ``<root>_<suffix>.png``.  It is written with numpy and
zlib alone.  ``WEBBFLOW_QUICKLOOK=0`` turns the PNGs off.

Nothing here can fail a flow: a problem publishing is logged as a warning and
the science goes on.  Outside a flow run (plain function calls) nothing is
published to Prefect.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np

from ..models import dqflags

log = logging.getLogger("webbflow.flows.observe")

QUICKLOOK_MAX = 512  # pixels on the longest side of a quick-look
THUMB_MAX = 160  # pixels of the thumbnail embedded in the markdown summary
FLAGS = ("DO_NOT_USE", "SATURATED", "JUMP_DET")


# ---------------------------------------------------------------------------
# statistics


def _array(model, name):
    """An array the model holds, without creating a missing one (datamodels create on access)."""
    arrays = getattr(model, "_arrays", None)
    if isinstance(arrays, dict):
        return arrays.get(name)
    return getattr(model, name, None)


def dq_stats(model) -> dict[str, float]:
    """Fractions (0-1) of pixels flagged DO_NOT_USE, SATURATED, JUMP_DET, any flag, and NaN in SCI.

    Images and cubes use DQ; ramps use PIXELDQ ORed with every group's GROUPDQ.
    """
    dq = _array(model, "dq")
    if dq is None:
        pix = _array(model, "pixeldq")
        grp = _array(model, "groupdq")
        if pix is None and grp is None:
            dq = None
        else:
            dq = np.zeros(np.shape(pix if pix is not None else grp)[-2:], np.uint32)
            if pix is not None:
                dq |= np.asarray(pix, np.uint32)
            if grp is not None:
                g = np.asarray(grp)
                dq |= np.bitwise_or.reduce(g.reshape(-1, *g.shape[-2:]), axis=0).astype(np.uint32)
    data = _array(model, "data")
    out: dict[str, float] = {}
    wht = _array(model, "wht")
    if dq is None and wht is not None and np.size(wht):
        # a resampled image has no DQ: a pixel no input reached (weight 0) is its DO_NOT_USE;
        # SATURATED and JUMP_DET do not exist there (flagged input pixels were left out)
        unused = float(np.count_nonzero(~(np.asarray(wht) > 0))) / float(np.size(wht))
        out["DO_NOT_USE"] = out["any"] = unused
        out["SATURATED"] = out["JUMP_DET"] = None
    if dq is not None and np.size(dq):
        dq = np.asarray(dq)
        n = float(dq.size)
        for name in FLAGS:
            out[name] = float(np.count_nonzero(dq & dqflags.PIXEL[name])) / n
        out["any"] = float(np.count_nonzero(dq)) / n
    if data is not None and np.size(data) and np.issubdtype(np.asarray(data).dtype, np.floating):
        out["NaN"] = float(np.count_nonzero(np.isnan(data))) / float(np.size(data))
    return out


# ---------------------------------------------------------------------------
# quick-look images


def _block_mean(img: np.ndarray, max_side: int) -> np.ndarray:
    """Average ``img`` in square blocks so that its longest side is at most ``max_side`` (NaN-aware)."""
    f = int(np.ceil(max(img.shape) / float(max_side)))
    if f <= 1:
        return img.astype(np.float64)
    ny, nx = (img.shape[0] // f) * f, (img.shape[1] // f) * f
    blocks = img[:ny, :nx].astype(np.float64).reshape(ny // f, f, nx // f, f)
    good = np.isfinite(blocks)
    total = np.where(good, blocks, 0.0).sum(axis=(1, 3))
    count = good.sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def asinh_stretch(img: np.ndarray, low: float = 0.5, high: float = 99.5, a: float = 0.1) -> np.ndarray:
    """8-bit asinh stretch between two percentiles of the finite pixels; NaN shows black."""
    img = np.asarray(img, np.float64)
    finite = np.isfinite(img)
    out = np.zeros(img.shape, np.uint8)
    if not finite.any():
        return out
    lo, hi = np.percentile(img[finite], [low, high])
    if not hi > lo:
        hi = lo + 1.0
    x = np.clip((img - lo) / (hi - lo), 0.0, 1.0)
    y = np.arcsinh(x / a) / np.arcsinh(1.0 / a)
    out[finite] = np.round(y[finite] * 255.0).astype(np.uint8)
    return out


def png_bytes(gray: np.ndarray) -> bytes:
    """A grayscale 8-bit PNG of ``gray`` (row 0 at the top of the picture)."""
    gray = np.ascontiguousarray(gray, np.uint8)
    h, w = gray.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = np.hstack([np.zeros((h, 1), np.uint8), gray]).tobytes()  # filter byte 0 on every row
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def quicklook_image(data, max_side: int = QUICKLOOK_MAX, min_side: int = 256) -> np.ndarray | None:
    """The stretched 8-bit picture of a 2-D array (the first plane of a cube), detector row 0 at the bottom.

    Large arrays are block-averaged down to ``max_side``; small ones (subarrays)
    are enlarged by pixel repetition to at least ``min_side``, so that a 64x64
    subarray is still legible.
    """
    a = np.asarray(data)
    while a.ndim > 2:
        a = a[0]
    if a.ndim != 2 or a.size == 0:
        return None
    img = asinh_stretch(_block_mean(a, max_side))[::-1]
    grow = min_side // max(img.shape)
    if grow > 1:
        img = np.repeat(np.repeat(img, grow, axis=0), grow, axis=1)
    return img


def quicklook_path(product: str | os.PathLike) -> Path:
    p = Path(product)
    return p.with_name(re.sub(r"\.(fits|asdf)$", "", p.name) + ".png")


def write_quicklook(model, product_path, max_side: int = QUICKLOOK_MAX) -> Path | None:
    """Write ``<product>.png`` next to a saved product (atomically); returns its path, or None for non-images."""
    img = quicklook_image(_array(model, "data"), max_side)
    if img is None:
        return None
    path = quicklook_path(product_path)
    from .stage import remove_stale_parts

    remove_stale_parts(path)
    from ..models.atomic import atomic_write_bytes

    atomic_write_bytes(path, png_bytes(img))
    return path


def _thumbnail_uri(model) -> str | None:
    img = quicklook_image(_array(model, "data"), THUMB_MAX, min_side=THUMB_MAX)
    if img is None:
        return None
    return "data:image/png;base64," + base64.b64encode(png_bytes(img)).decode("ascii")


# ---------------------------------------------------------------------------
# Prefect artifacts


def _in_flow_run() -> bool:
    from ._prefect import in_flow_run  # without importing Prefect when no run can exist

    return in_flow_run()


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    key = "-".join(p for p in parts if p)
    key = re.sub(r"[^a-z0-9-]+", "-", key.lower()).strip("-")
    return re.sub(r"-{2,}", "-", key)[:100]


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100.0 * x:.3f}"


def _short_ref(path: str) -> str:
    if not path or str(path).upper() == "N/A":
        return "N/A"
    return os.path.basename(str(path).replace("crds://", ""))


def step_rows(run) -> list[dict]:
    """One row per step run: status, why it was skipped, seconds, references, and its science figures."""
    from ..tasks.base import format_qa

    rows = []
    for r in run.records:
        label = getattr(r, "label", "")
        rows.append({
            "step": r.name + (f" [{label}]" if label else ""),
            "status": r.status,
            "note": getattr(r, "reason", "") or "",
            "seconds": round(float(r.seconds), 3),
            "qa": format_qa(getattr(r, "qa", None) or {}),
            "references": ", ".join(f"{rt}={_short_ref(p)}" for rt, p in sorted(r.references.items())),
        })
    return rows


def parameter_rows(run) -> list[dict]:
    """The resolved parameters of every step (defaults, CRDS pars files, config file and overrides applied)."""
    rows = []
    for name, p in run.params.items():
        for k, v in p.model_dump(exclude={"overrides"}).items():
            rows.append({"step": name, "parameter": k, "value": str(v)})
        for rt, path in sorted(p.overrides.items()):
            rows.append({"step": name, "parameter": f"override_{rt}", "value": str(path)})
    return rows


def dq_rows(products: list[tuple[str, object]]) -> list[dict]:
    rows = []
    for label, model in products:
        s = dq_stats(model)
        if not s:
            continue
        shape = _array(model, "data")
        rows.append({
            "product": Path(label).name,
            "shape": "x".join(str(n) for n in np.shape(shape)) if shape is not None else "",
            "DO_NOT_USE %": _pct(s.get("DO_NOT_USE")),
            "SATURATED %": _pct(s.get("SATURATED")),
            "JUMP_DET %": _pct(s.get("JUMP_DET")),
            "any flag %": _pct(s.get("any")),
            "NaN %": _pct(s.get("NaN")),
        })
    return rows


def summary_markdown(pipeline: str, source: str, run, products: list[tuple[str, object]],
                     quicklooks: dict[str, Path], thumbs: dict[str, str]) -> str:
    total = sum(r.seconds for r in run.records)
    lines = [f"# {pipeline}: {source}", ""]
    lines.append(f"- **CRDS context:** `{run.context or 'none (all references overridden or none needed)'}`")
    lines.append(f"- **steps:** {sum(r.status == 'COMPLETE' for r in run.records)} complete, "
                 f"{sum(r.status == 'SKIPPED' for r in run.records)} skipped, {total:.2f} s in steps")
    from ..tasks.base import format_qa

    figures = [(r.name, format_qa(r.qa)) for r in run.records if getattr(r, "qa", None)]
    if figures:
        lines += ["", "## Science figures", ""]
        lines += [f"- **{name}:** {text}" for name, text in figures]
    refs: dict[str, str] = {}
    for r in run.records:
        for rt, p in r.references.items():
            refs.setdefault(rt, p)
    lines += ["", "## References used", ""]
    if refs:
        lines += ["| reftype | file |", "| --- | --- |"]
        lines += [f"| {rt} | `{_short_ref(p)}` |" for rt, p in sorted(refs.items())]
    else:
        lines.append("(none)")
    lines += ["", "## Products", ""]
    for label, _m in products:
        lines.append(f"- `{label}`")
        if label in quicklooks:
            lines.append(f"  - quick-look written beside it: `{Path(quicklooks[label]).name}`")
        if label in thumbs:
            lines += ["", f"![{Path(label).name}]({thumbs[label]})", ""]
    return "\n".join(lines) + "\n"


class _FileArrays:
    """The SCI, DQ and WHT arrays of a FITS product on disk, for :func:`dq_stats`."""

    def __init__(self, path):
        from astropy.io import fits

        self._path = None  # no quick-look: the stage wrote it, the artifact only counts its flags
        self._arrays = {}
        with fits.open(path, memmap=False) as hdul:  # DQ is unsigned (BZERO): no memory map
            for ext, name in (("SCI", "data"), ("DQ", "dq"), ("WHT", "wht")):
                if ext in hdul and hdul[ext].data is not None:
                    self._arrays[name] = np.array(hdul[ext].data)


def publish_stage(run, pipeline: str, source: str, products) -> dict[str, Path]:
    """Publish a stage's artifacts and write quick-looks of its saved 2-D products.

    ``products``: the stage's output models or paths of products it wrote (only
    their DQ statistics are shown); None entries are ignored.  A model
    saved to disk (``model.save``) is shown under its path, otherwise under its
    file name.  Returns ``{product path: quick-look path}``.  Never raises.
    """
    try:
        return _publish(run, pipeline, source, [m for m in products if m is not None])
    except Exception as exc:  # noqa: BLE001 - observability never fails the science
        log.warning("could not publish the %s artifacts for %s: %s", pipeline, source, exc)
        return {}


def _publish(run, pipeline: str, source: str, models) -> dict[str, Path]:
    from .naming import root_of

    labelled: list[tuple[str, object]] = []
    for m in models:
        if isinstance(m, (str, os.PathLike)):  # a product on disk: its DQ and SCI for the statistics only
            labelled.append((str(m), _FileArrays(m)))
            continue
        path = getattr(m, "_path", None)
        label = str(path) if path else (getattr(m.meta, "filename", None) or type(m).__name__)
        labelled.append((label, m))
    quicklooks: dict[str, Path] = {}
    if os.environ.get("WEBBFLOW_QUICKLOOK", "1").strip().lower() not in ("0", "false", "no", "off"):
        for label, m in labelled:
            if getattr(m, "_path", None) and np.ndim(_array(m, "data")) == 2:
                try:
                    ql = write_quicklook(m, label)
                except OSError as exc:
                    log.warning("could not write the quick-look of %s: %s", label, exc)
                    continue
                if ql is not None:
                    quicklooks[label] = ql
    if not _in_flow_run():
        return quicklooks
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    root = root_of(source)
    create_table_artifact(
        step_rows(run), key=artifact_key(pipeline, root, "steps"),
        description=f"{pipeline} steps for {source}: status, seconds and reference files",
    )
    rows = dq_rows(labelled)
    if rows:
        create_table_artifact(
            rows, key=artifact_key(pipeline, root, "dq"),
            description=f"{pipeline} DQ statistics for {source}: percent of pixels flagged",
        )
    thumbs = {}
    for label, m in labelled:
        if label in quicklooks:
            uri = _thumbnail_uri(m)
            if uri:
                thumbs[label] = uri
    create_markdown_artifact(
        summary_markdown(pipeline, source, run, labelled, quicklooks, thumbs),
        key=artifact_key(pipeline, root, "summary"),
        description=f"{pipeline} summary for {source}: CRDS context, references, products",
    )
    create_table_artifact(
        parameter_rows(run), key=artifact_key(pipeline, root, "parameters"),
        description=f"{pipeline} resolved step parameters for {source}",
    )
    for label, ql in quicklooks.items():
        # the picture itself, inside the artifact: a file:// link would point at the worker's disk
        create_markdown_artifact(
            quicklook_markdown(label, ql), key=artifact_key("quicklook", ql.stem),
            description=f"quick-look of {Path(label).name} (asinh stretch)",
        )
    return quicklooks


def quicklook_markdown(label: str, png: Path) -> str:
    data = Path(png).read_bytes()
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return (f"# quick-look: {Path(label).name}\n\n![{Path(png).name}]({uri})\n\n"
            f"asinh stretch between the 0.5 and 99.5 percentiles; row 0 at the bottom. "
            f"Written beside the product as `{Path(png).name}`.\n")


def association_markdown(res) -> str:
    """Markdown summary of an association run: members, reuse, failures, Stage 3 products with quick-looks."""
    ok = [m for m in res.members if m.ok]
    lines = [f"# association: {Path(res.asn).name}", "",
             f"- **members:** {len(ok)} of {len(res.members)} calibrated, "
             f"{sum(1 for m in res.members if m.reused)} with reused stages, {res.seconds:.1f} s", ""]
    lines += ["| exposure | state | reused | seconds |", "| --- | --- | --- | --- |"]
    for m in res.members:
        state = "ok" if m.ok else f"FAILED: {m.error}"
        lines.append(f"| {m.member} | {state} | {', '.join(m.reused) or '-'} | {m.seconds:.1f} |")
    for name, prod in (res.stage3 or {}).items():
        written = [str(p) for p in (prod or {}).get("written", [])] if isinstance(prod, dict) else []
        lines += ["", f"## Stage 3: {name}" + (" (reused)" if isinstance(prod, dict) and prod.get("reused") else ""), ""]
        lines += [f"- `{p}`" for p in written]
        for p in written:
            ql = quicklook_path(p)
            if p.endswith("_i2d.fits") and ql.is_file() and ql.stat().st_size < 400_000:
                uri = "data:image/png;base64," + base64.b64encode(ql.read_bytes()).decode("ascii")
                lines += ["", f"![{ql.name}]({uri})", ""]
    return "\n".join(lines) + "\n"


def publish_association(res) -> None:
    """Publish an association run's summary (a table of members and a markdown with the Stage 3 quick-look)."""
    try:
        if not _in_flow_run():
            return
        from prefect.artifacts import create_markdown_artifact, create_table_artifact

        stem = re.sub(r"_asn$", "", Path(res.asn).stem)
        create_table_artifact(
            [{"exposure": m.member, "ok": m.ok, "reused": ", ".join(m.reused), "seconds": round(m.seconds, 2),
              "cal": Path(m.cal).name if m.cal else "", "error": m.error or ""} for m in res.members],
            key=artifact_key("association", stem, "members"), description=f"members of {Path(res.asn).name}",
        )
        create_markdown_artifact(association_markdown(res), key=artifact_key("association", stem, "summary"),
                                 description=f"association {Path(res.asn).name}: members and Stage 3 products")
    except Exception as exc:  # noqa: BLE001 - observability never fails the science
        log.warning("could not publish the association summary: %s", exc)


__all__ = ["publish_association", "association_markdown", "dq_stats", "asinh_stretch", "png_bytes", "quicklook_image", "write_quicklook", "quicklook_path",
           "publish_stage", "artifact_key", "step_rows", "dq_rows", "summary_markdown", "parameter_rows",
           "quicklook_markdown"]
