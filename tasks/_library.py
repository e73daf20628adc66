"""A model library for Stage 3: the exposures of one product, held one at a time.

jwst users with hundreds of Stage 3 inputs are killed for lack of memory when
every calibrated exposure sits in memory at full size at once.  A
:class:`ModelLibrary` keeps an ordered list of members and opens at most the
one a step is working on:

- a member given as a **path** stays on disk; it is opened when borrowed and
  dropped when shelved.  When a step changes it (a new WCS, a background
  level, outlier flags), the changed model is written to the library's own
  temporary folder, never over the input file, and later borrows read that;
- a member given as a **model** stays in memory (the caller holds it anyway),
  unless ``on_disk=True``, which writes it to the temporary folder and keeps
  only the path.

What a step needs of every member at once (file name, exposure group, WCS,
S_REGION, shape, background level) is a small metadata snapshot taken when
a member is first read: :meth:`read_metadata` and :meth:`stub` (an
ImageModel with that metadata and a zero-stride data array of the member's
shape, no pixels).  The snapshot of an IFU exposure kept on disk has no WCS
(``meta.wcs`` is None): that WCS is large, and the IFU steps borrow the
member when they need it.

Members belong to exposure groups (jwst's ``group_id``: program,
observation, visit, visit group, sequence, activity and exposure number, or
the association member's ``group_id``); detectors of one exposure form one
group, which tweakreg aligns and outlier detection drizzles together.

Iterating::

    for i, model in library.each(modify=True):
        model.dq |= flags            # saved back when the loop moves on

Steps accept a library, a list of models or paths, or one model
(:func:`as_library`), and give back what they were given: a list of models
for a list of models, the library otherwise (:func:`give_back`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .. import models
from ..errors import InputFileError, a_an
from ..models.io import without_schema_pass

log = logging.getLogger("webbflow.steps.library")


def group_id_of(meta) -> str:
    """jwst's exposure group id of a model's metadata (``meta.group_id`` when set)."""
    gid = getattr(meta, "group_id", None)
    if gid:
        return str(gid)
    o = meta.observation
    parts = (o.program_number, o.observation_number, o.visit_number, o.visit_group, o.sequence_id,
             o.activity_id, o.exposure_number)
    if any(p is None for p in parts):
        return None
    return f"jw{parts[0]}{parts[1]}{parts[2]}_{parts[3]}{parts[4]}{parts[5]}_{parts[6]}"


def member_root(filename: str) -> str:
    """``jw..._nrca1_cal.fits`` -> ``jw..._nrca1``: the file name less its extension and product suffix."""
    stem = Path(filename).name
    for ext in (".fits", ".asdf"):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
    if "_" in stem:
        head, tail = stem.rsplit("_", 1)
        if tail.isalpha() or tail in ("i2d", "s2d", "x1d", "s3d"):
            return head
    return stem


@dataclass
class _Member:
    source: Path | None  # the input file (never written)
    path: Path | None  # where the member's current state is on disk (source, or a temporary copy)
    model: Any = None  # the member in memory, when it is kept there
    meta: Any = None  # metadata snapshot (a deep copy of model.meta, with the WCS but for IFU members on disk)
    shape: tuple | None = None
    headers: dict = field(default_factory=dict)  # PRIMARY and SCI cards kept from the file
    group_id: str | None = None
    exptype: str = "science"


class ModelLibrary:
    """An ordered collection of imaging exposures that holds at most one of them at full size.

    ``members``: paths and/or DataModels (a single path or model is one
    member).  ``on_disk``: None keeps paths on disk and models in memory;
    True writes in-memory models to a temporary folder too; False loads path
    members into memory on first use and keeps them (jwst's in_memory=True).
    ``asn_id``/``product_name``: from the level-3 association, used to name
    products (``<root>_<asn_id>_crf.fits``, ``<product>_i2d.fits``).
    ``group_ids``: per-member group ids from the association (else computed).
    """

    def __init__(
        self,
        members,
        *,
        on_disk: bool | None = None,
        asn_id: str | None = None,
        product_name: str | None = None,
        group_ids: list[str | None] | None = None,
        temp_dir: str | os.PathLike | None = None,
        asn_info: tuple[str, str] | None = None,
    ):
        if isinstance(members, (str, os.PathLike, models.DataModel)):
            members = [members]
        members = list(members)
        if not members:
            raise ValueError("a model library needs at least one member")
        self.on_disk = on_disk
        self.asn_id = asn_id
        self.product_name = product_name
        # (pool, association file name) of an association's members: each member records them
        # (ASNPOOL/ASNTABLE) when the library opens it, as jwst's library does
        self.asn_info = tuple(asn_info) if asn_info else None
        self._temp_root = Path(temp_dir) if temp_dir is not None else None
        self._temp: Path | None = None
        self._finalizer = None
        self._members: list[_Member] = []
        self._borrowed: set[int] = set()
        # steps marked on every member (mark_step) and set on a member on disk each time it is
        # opened, instead of reading and rewriting every member for one keyword
        self._marks: dict[str, str] = {}
        # what steps compute from the members' WCSs and share (resample's output grid and pixel maps:
        # tasks/resample.py), keyed on the WCS objects themselves, so a changed WCS is a new key
        self.shared: dict = {}
        for k, m in enumerate(members):
            gid = group_ids[k] if group_ids is not None and k < len(group_ids) else None
            if isinstance(m, models.DataModel):
                mem = _Member(source=None, path=None, model=m, group_id=gid)
                self._members.append(mem)
                if on_disk:
                    self._snapshot(mem, m)
                    self._write(len(self._members) - 1, m)
                    mem.model = None
            elif isinstance(m, (str, os.PathLike)):
                p = Path(m)
                if not p.exists():
                    raise InputFileError(p, "no such file")
                self._members.append(_Member(source=p, path=p, group_id=gid))
            else:
                raise TypeError(f"a library member must be a path or a datamodel, not {type(m).__name__}")

    # -- construction helpers --------------------------------------------
    @classmethod
    def coerce(cls, inp, *, on_disk: bool | None = None) -> "ModelLibrary":
        """``inp`` itself when it is a library, else a new library of it."""
        if isinstance(inp, ModelLibrary):
            return inp
        return cls(inp, on_disk=on_disk)

    # -- size, names, groups ---------------------------------------------
    def __len__(self) -> int:
        return len(self._members)

    def __repr__(self) -> str:
        where = sum(1 for m in self._members if m.model is None)
        return f"<ModelLibrary {len(self)} members ({where} on disk) asn_id={self.asn_id!r}>"

    @property
    def filenames(self) -> list[str]:
        return [self.read_metadata(i).filename or f"member{i}" for i in range(len(self))]

    def group_id(self, index: int) -> str:
        mem = self._members[index]
        if mem.group_id is None:
            gid = group_id_of(self.read_metadata(index))
            mem.group_id = gid if gid is not None else f"member{index:05d}"
        return mem.group_id

    @property
    def group_indices(self) -> dict[str, list[int]]:
        """``{group_id: [member indices]}`` in member order."""
        out: dict[str, list[int]] = {}
        for i in range(len(self)):
            out.setdefault(self.group_id(i), []).append(i)
        return out

    @property
    def group_names(self) -> list[str]:
        return list(self.group_indices)

    def in_memory(self, index: int) -> bool:
        return self._members[index].model is not None

    # -- metadata --------------------------------------------------------
    def _snapshot(self, mem: _Member, model) -> None:
        if mem.model is None and isinstance(model, models.IFUImageModel) and model.meta.wcs is not None:
            # an IFU exposure on disk: its snapshot leaves the WCS out (an MRS WCS is some 1,300
            # polynomial models, 25 MiB a copy: kept per member, memory grew with the number of
            # exposures); steps that need it borrow the member (cube_build does)
            wcs = model.meta.wcs
            model.meta.wcs = None
            try:
                mem.meta = model.meta.model_copy(deep=True)
            finally:
                model.meta.wcs = wcs
        else:
            mem.meta = model.meta.model_copy(deep=True)
        mem.shape = None if model.shape is None else tuple(model.shape)
        mem.headers = {k: h.copy() for k, h in model._headers.items() if k in ("PRIMARY", "SCI")}

    def read_metadata(self, index: int):
        """The member's metadata (a snapshot; changing it changes nothing)."""
        mem = self._members[index]
        if mem.model is not None:
            return mem.model.meta
        if mem.meta is None:
            model = self._open(index)
            if self.on_disk is False:
                # kept from its first read (jwst's in_memory=True): its metadata needs no snapshot,
                # and borrowing it later does not read the file again
                mem.model = model
                return model.meta
            self._snapshot(mem, model)
            del model
        return mem.meta

    def shape(self, index: int) -> tuple:
        mem = self._members[index]
        if mem.model is not None:
            return tuple(mem.model.shape)
        if mem.shape is None:
            self.read_metadata(index)
        return mem.shape

    def stub(self, index: int, copy: bool = True):
        """An ImageModel with the member's metadata, headers and a pixel-free data array of its shape.

        ``copy=False`` shares the member's metadata and headers instead of copying them (the WCS
        makes that copy costly), for a caller that only reads them."""
        mem = self._members[index]
        meta = self.read_metadata(index)
        shape = self.shape(index)
        stub = models.ImageModel(data=np.broadcast_to(np.float32(0.0), shape))
        stub.meta = meta.model_copy(deep=True) if copy else meta
        src = mem.model._headers if mem.model is not None else mem.headers
        stub._headers = {k: (h.copy() if copy else h) for k, h in src.items() if k in ("PRIMARY", "SCI")}
        return stub

    def primary_header(self, index: int):
        """The member's primary header (from memory, or read alone from its file: no metadata tree, no WCS)."""
        mem = self._members[index]
        if mem.model is not None:
            return mem.model._headers.get("PRIMARY")
        if mem.meta is not None and "PRIMARY" in mem.headers:
            return mem.headers["PRIMARY"]
        from astropy.io import fits

        try:
            return fits.getheader(mem.path, 0)
        except OSError as exc:
            raise InputFileError(mem.path, f"cannot be read as FITS ({exc})") from None

    def read_arrays(self, index: int, names=("data", "dq")) -> tuple:
        """Arrays of a member without opening it as a model (no metadata tree, no WCS): the model's
        when it is in memory, else the named extensions of its current file (SCI for ``data``)."""
        mem = self._members[index]
        if mem.model is not None:
            return tuple(getattr(mem.model, n) for n in names)
        from astropy.io import fits

        out = []
        try:
            with fits.open(mem.path, memmap=False) as hdul:
                for n in names:
                    ext = "SCI" if n == "data" else n.upper()
                    out.append(np.asarray(hdul[ext].data))
        except KeyError as exc:
            raise InputFileError(mem.path, f"has no {exc.args[0]} extension") from None
        except OSError as exc:
            raise InputFileError(mem.path, f"cannot be read as FITS ({exc})") from None
        return tuple(out)

    # -- borrowing -------------------------------------------------------
    def _open(self, index: int):
        mem = self._members[index]
        # without asdf's validation of the tree against the schemas on read, as spec3 reads its members:
        # the same tree, and most of that pass's cost is loading the schemas at the first file
        with without_schema_pass():
            model = models.open(mem.path)
        if not isinstance(model, (models.ImageModel, models.IFUImageModel)):
            raise InputFileError(mem.path, f"is {a_an(type(model).__name__)}; Stage 3 imaging needs 2-D images (cal files)")
        for attr, status in self._marks.items():
            _set_cal_step(model.meta, model._headers, attr, status)
        return model

    def borrow(self, index: int, snapshot: bool = True):
        """The member at ``index``, opened if it is on disk.  Give it back with :meth:`shelve`.

        ``snapshot=False``: do not keep the metadata snapshot (a copy of the metadata and WCS,
        kept per member) that an opened member otherwise leaves behind, for a step that keeps
        what it needs itself."""
        if index in self._borrowed:
            raise RuntimeError(f"library member {index} is already borrowed")
        mem = self._members[index]
        model = mem.model if mem.model is not None else self._open(index)
        if mem.meta is None and mem.model is None and snapshot:
            self._snapshot(mem, model)
        if mem.group_id is None and mem.meta is None:  # from the opened model, not by opening it again
            gid = group_id_of(model.meta)
            mem.group_id = gid if gid is not None else f"member{index:05d}"
        gid = self.group_id(index)
        if getattr(model.meta, "group_id", None) != gid:
            model.meta.group_id = gid
        if self.asn_info is not None:
            model.meta.asn.pool_name, model.meta.asn.table_name = self.asn_info
        self._borrowed.add(index)
        return model

    def shelve(self, index: int, model, modify: bool = True) -> None:
        """Give back a borrowed member; ``modify`` saves its new state (to the temporary folder when on disk)."""
        if index not in self._borrowed:
            raise RuntimeError(f"library member {index} was not borrowed")
        self._borrowed.discard(index)
        mem = self._members[index]
        if mem.model is not None or (self.on_disk is False):
            mem.model = model
            if modify:
                mem.meta = None
            return
        if modify:
            self._snapshot(mem, model)
            self._write(index, model)

    def each(self, modify: bool = False) -> Iterator[tuple[int, Any]]:
        """``(index, model)`` for every member in order, one open at a time; ``modify`` saves each back."""
        for i in range(len(self)):
            model = self.borrow(i)
            try:
                yield i, model
            except GeneratorExit:
                self._borrowed.discard(i)
                raise
            self.shelve(i, model, modify=modify)

    def map_forked(self, fn) -> list:
        """``fn(index, model)`` for every member, read only, side by side on forked processes where
        :func:`._threads.fork_map` may fork (in one process otherwise); the results in member order.
        The members should be in memory: a child's reads of a member on disk are not shared."""
        from ._threads import fork_map

        def one(i):
            model = self.borrow(i)
            try:
                return fn(i, model)
            finally:
                self.shelve(i, model, modify=False)

        return fork_map(one, range(len(self)))

    def to_list(self) -> list:
        """Every member as a model in memory (for callers that gave a list of models)."""
        out = []
        for i in range(len(self)):
            mem = self._members[i]
            out.append(mem.model if mem.model is not None else self._open(i))
        return out

    # -- the temporary folder --------------------------------------------
    def _tempdir(self) -> Path:
        if self._temp is None:
            base = None if self._temp_root is None else str(self._temp_root)
            if base is not None:
                Path(base).mkdir(parents=True, exist_ok=True)
            self._temp = Path(tempfile.mkdtemp(prefix="webbflow-library-", dir=base))
            self._finalizer = weakref.finalize(self, shutil.rmtree, str(self._temp), True)
        return self._temp

    def _write(self, index: int, model) -> None:
        """Save a member's new state under its own file name in a per-member temporary folder."""
        mem = self._members[index]
        name = Path(model.meta.filename or f"member{index:05d}.fits").name
        folder = self._tempdir() / f"{index:05d}"
        folder.mkdir(exist_ok=True)
        mem.path = Path(model.save(folder / name))

    def close(self) -> None:
        """Remove the temporary folder (members changed on disk are lost)."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._temp = None

    def __getstate__(self):
        # a copy sent to another process (a Dask worker) shares the temporary folder but does not
        # own it: the original library removes it
        state = dict(self.__dict__)
        state["_finalizer"] = None
        state["_borrowed"] = set()
        state["shared"] = {}
        return state

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- step status and products ----------------------------------------
    def mark_step(self, attr: str, status: str) -> None:
        """Set ``meta.cal_step.<attr>`` on every member (used when a step is skipped as a whole).

        Members in memory and the metadata snapshots are marked now; a member on disk is marked
        each time it is opened (borrowed, listed or read for its metadata), so that its file is not
        read and written again for one keyword (an MRS cal's WCS alone takes seconds each way)."""
        self._marks[attr] = status
        for mem in self._members:
            if mem.model is not None:
                _set_cal_step(mem.model.meta, None, attr, status)  # its header follows its meta when saved
            if mem.meta is not None:
                _set_cal_step(mem.meta, mem.headers if mem.model is None else None, attr, status)

    def save_members(self, output_dir, suffix: str) -> list[str]:
        """Write every member as ``<root>[_<asn_id>]_<suffix>.fits`` in ``output_dir`` (jwst's naming)."""
        out_dir = Path(output_dir)
        written = []
        for _i, model in self.each(modify=False):
            root = member_root(model.meta.filename or f"member{_i:05d}")
            name = f"{root}_{self.asn_id}_{suffix}.fits" if self.asn_id else f"{root}_{suffix}.fits"
            written.append(model.save(out_dir / name))
            log.info("Saved %s", out_dir / name)
        return written


def _set_cal_step(meta, headers: dict | None, attr: str, status: str) -> None:
    """``meta.cal_step.<attr> = status``, and its S_* card in ``headers["PRIMARY"]`` (headers read
    from a member's file, which a product may copy) as the member's file would have it."""
    from ..models.meta import CAL_STEP_KEYWORDS

    try:
        setattr(meta.cal_step, attr, status)
    except (AttributeError, ValueError):
        return
    primary = (headers or {}).get("PRIMARY")
    if primary is not None and attr in CAL_STEP_KEYWORDS:
        primary[CAL_STEP_KEYWORDS[attr]] = status


def as_library(inp, in_memory: bool = True) -> ModelLibrary:
    """A step's input as a library: a library as is, else a new one (``in_memory=False``: on disk)."""
    if isinstance(inp, ModelLibrary):
        return inp
    if isinstance(inp, (str, os.PathLike)) and str(inp).lower().endswith(".json"):
        raise InputFileError(inp, "is an association; resolve it with the image3 flow (webbflow run image3 ASN)")
    return ModelLibrary(inp, on_disk=None if in_memory else True)


def give_back(library: ModelLibrary, original):
    """What a step returns: a list of models when it was given models, the library otherwise."""
    if isinstance(original, ModelLibrary):
        return library
    if isinstance(original, models.DataModel):
        return library.to_list()
    if isinstance(original, (list, tuple)) and original and all(isinstance(m, models.DataModel) for m in original):
        return library.to_list()
    return library
