"""Reading a file's ASDF metadata tree with each ``wcs`` node left unconverted until it is used.

A WFSS cal exposure holds one gwcs WCS per cutout (source and order); with hundreds of sources,
converting them all (and validating the tree against the schemas) is most of the time of opening
the file, although Stage 3's WFSS branch evaluates few of them (the first cutout's, for the
product's S_REGION).  Inside :func:`lazy_wcs_reading`, :func:`webbflow.models.base._load_asdf_tree`
reads the tree as tagged nodes, without validating it on read, and puts a
:class:`LazyWcs` wherever a ``wcs`` key holds a tagged node: the WCS object is made on first use
(an attribute, a call), then kept.  Everything else of the tree is read as usual.

The switch is a context variable, so it holds for the thread (or task) that set it and nothing else.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import threading

LAZY_WCS = contextvars.ContextVar("webbflow_lazy_wcs", default=False)


@contextlib.contextmanager
def lazy_wcs_reading():
    """Files opened inside read their ``wcs`` nodes lazily and skip asdf's schema validation on read."""
    import asdf

    token = LAZY_WCS.set(True)
    try:
        with asdf.config_context() as cfg:
            cfg.validate_on_read = False
            yield
    finally:
        LAZY_WCS.reset(token)


class LazyWcs:
    """A gwcs WCS made from its ASDF node on first use; it then acts as the WCS itself."""

    __slots__ = ("_convert", "_node", "_wcs", "_lock", "_copy_on_load")

    def __init__(self, convert, node, lock: threading.Lock, copy_on_load: bool = False):
        # ``convert(node)`` makes the WCS with the file's converters (under the file's lock)
        self._convert, self._node, self._lock = convert, node, lock
        self._wcs = None
        self._copy_on_load = copy_on_load

    def load(self):
        """The WCS object (made now if it was not yet)."""
        if self._wcs is None:
            wcs = self._convert(self._node)
            self._wcs = copy.deepcopy(wcs) if self._copy_on_load else wcs
            self._node = self._convert = None
        return self._wcs

    def __getattr__(self, name):
        if name.startswith("__"):  # protocol probes (pydantic's serialiser, copy, pickle) make no WCS
            raise AttributeError(name)
        return getattr(self.load(), name)

    def __call__(self, *args, **kwargs):
        return self.load()(*args, **kwargs)

    def __deepcopy__(self, memo):
        if self._wcs is not None:
            return copy.deepcopy(self._wcs, memo)
        return LazyWcs(self._convert, self._node, self._lock, copy_on_load=True)

    def __reduce__(self):
        return (_identity, (self.load(),))

    def __repr__(self):
        return f"<LazyWcs {'loaded' if self._wcs is not None else 'not loaded'}>"


def _identity(x):
    return x


def lazy_tree(af, cb):
    """``af``'s tree (opened with ``lazy_tree=True``: tagged, not converted yet) as plain dicts
    and lists: each tagged node converted as asdf converts it (``cb`` applied to every value, as
    ``walk_and_modify`` would), except a tagged ``wcs`` node, which becomes a :class:`LazyWcs`."""
    from asdf import tagged
    from asdf.yamlutil import tagged_tree_to_custom_tree

    lock = threading.Lock()

    def convert(node):
        with lock:
            return tagged_tree_to_custom_tree(node, af)

    def walk(node, key=None):
        if isinstance(node, tagged.Tagged):
            tag = node._tag or ""
            if key == "wcs" and tag.startswith("tag:stsci.edu:gwcs/wcs-"):
                return LazyWcs(convert, node, lock)
            if isinstance(node, tagged.TaggedDict) and tag.startswith("tag:stsci.edu:asdf/core/asdf-"):
                return cb({k: walk(v, k) for k, v in node.data.items()})  # a plain mapping
            return cb(tagged_tree_to_custom_tree(node, af))
        if isinstance(node, dict):
            return cb({k: walk(v, k) for k, v in node.items()})
        if isinstance(node, list):
            return cb([walk(v) for v in node])
        return cb(node)

    root = af.tree
    node = getattr(root, "data", None)  # a lazy tree: the AsdfObject's lazy node over the tagged tree
    return walk(getattr(node, "data", root) if node is not None else root)
