"""Reading a file's ASDF metadata tree with each ``wcs`` node left unparsed until it is used.

A WFSS cal exposure holds one gwcs WCS per cutout (source and order); with hundreds of sources,
parsing and converting them all (and validating the tree against the schemas) is most of the time
and memory of opening the file (some 20 kB of YAML and a few thousand Python objects per WCS),
although Stage 3's WFSS branch evaluates few of them (the first cutout's, for the product's
S_REGION).  Inside :func:`lazy_wcs_reading`, :func:`webbflow.models.base._load_asdf_tree` reads
the tree without validating it on read, and puts a :class:`LazyWcs` wherever a ``wcs`` key holds
a gwcs WCS: the WCS object is made on first use (an attribute, a call), then kept.  Everything
else of the tree is read as usual.

Not even the YAML of those WCSs is parsed at open (:func:`split_wcs_yaml`): each block-style
``wcs:`` node's text is cut out of the YAML (replaced by a placeholder of the same byte length, so
that the ASDF blocks after it stay where the block index says), and parsed only when its WCS is
first used, with the definitions of the YAML anchors it refers to elsewhere in the tree (jwst's
files share objects between the cutouts' WCSs: the later ones hold aliases to nodes of the first).
A node that cannot be cut out safely (an alias from the rest of the tree into it, an anchor that
is not a block or single-line node) stays in the tree, read as before.

The switch is a context variable, so it holds for the thread (or task) that set it and nothing else.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import re
import threading

LAZY_WCS = contextvars.ContextVar("webbflow_lazy_wcs", default=False)
CUT_YAML = contextvars.ContextVar("webbflow_lazy_wcs_cut", default=True)


@contextlib.contextmanager
def lazy_wcs_reading(cut_yaml: bool = True):
    """Files opened inside read their ``wcs`` nodes lazily and skip asdf's schema validation on read.

    ``cut_yaml=False``: the WCS nodes' YAML is parsed with the rest of the tree (each WCS is still
    converted on first use).  For a reader that makes every WCS at once (spec3's slit exposures),
    cutting the nodes out only adds work: finding them and the anchors each refers to in the text,
    twice, and parsing those anchored nodes again for each WCS that refers to them."""
    from ._asdf_write import fast_walks
    from .io import without_schema_pass

    token = LAZY_WCS.set(True)
    cut_token = CUT_YAML.set(cut_yaml)
    try:
        with without_schema_pass(), fast_walks():  # the tree converted without walk_and_modify's overheads
            yield
    finally:
        CUT_YAML.reset(cut_token)
        LAZY_WCS.reset(token)


class LazyWcs:
    """A gwcs WCS made from its ASDF node on first use; it then acts as the WCS itself.

    ``_node`` is the WCS's tagged ASDF node (parsed from its YAML on first access when the node
    was cut out of the tree: ``parse``), ``_convert`` converts a tagged node with the file's
    converters; both are None once the WCS is made."""

    __slots__ = ("_convert", "_tagged", "_parse", "_wcs", "_lock", "_copy_on_load")

    def __init__(self, convert, node, lock: threading.Lock, copy_on_load: bool = False, parse=None):
        # ``convert(node)`` makes the WCS with the file's converters (under the file's lock);
        # ``parse()`` gives the tagged node of a WCS whose YAML was cut out of the tree
        self._convert, self._tagged, self._lock, self._parse = convert, node, lock, parse
        self._wcs = None
        self._copy_on_load = copy_on_load

    @property
    def _node(self):
        if self._tagged is None and self._parse is not None:
            self._tagged, self._parse = self._parse(), None
        return self._tagged

    @property
    def parsed(self) -> bool:
        """Whether the WCS's YAML has been parsed (always, unless it was cut out of the tree)."""
        return self._parse is None

    def load(self):
        """The WCS object (made now if it was not yet)."""
        if self._wcs is None:
            wcs = self._convert(self._node)
            self._wcs = copy.deepcopy(wcs) if self._copy_on_load else wcs
            self._tagged = self._convert = self._parse = None
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
        return LazyWcs(self._convert, self._tagged, self._lock, copy_on_load=True, parse=self._parse)

    def __reduce__(self):
        return (_identity, (self.load(),))

    def __repr__(self):
        return f"<LazyWcs {'loaded' if self._wcs is not None else 'not loaded'}>"


def _identity(x):
    return x


def lazy_tree(af, cb, cut: "CutWcs | None" = None):
    """``af``'s tree (opened with ``lazy_tree=True``: tagged, not converted yet) as plain dicts
    and lists: each tagged node converted as asdf converts it (``cb`` applied to every value, as
    ``walk_and_modify`` would), except a tagged ``wcs`` node, which becomes a :class:`LazyWcs`
    (``cut``: the WCS nodes :func:`split_wcs_yaml` cut out of the YAML, parsed on first use)."""
    from asdf import tagged
    from asdf.yamlutil import tagged_tree_to_custom_tree

    lock = threading.Lock()

    def convert(node):
        with lock:
            return tagged_tree_to_custom_tree(node, af)

    def walk(node, key=None):
        if isinstance(node, tagged.Tagged):
            tag = node._tag or ""
            if key == "wcs" and tag == CUT_TAG and cut is not None:
                return LazyWcs(convert, None, lock, parse=functools.partial(cut.parse, int(node.data)))
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


# ---------------------------------------------------------------------------
# the WCS nodes cut out of the YAML text

CUT_TAG = "tag:webbflow/cut-wcs"
_END = re.compile(rb"\r?\n\.\.\.((\r?\n)|$)")  # the end of the YAML document (asdf's marker)
_WCS_KEY = re.compile(rb"^( *)((?:- )*)wcs: !<tag:stsci\.edu:gwcs/wcs-[^>]*>[ ]*$", re.M)
_ANCHOR = re.compile(rb"(?<![\w&*])&(id\d+)\b")
_ALIAS = re.compile(rb"(?<![\w&*])\*(id\d+)\b")
_KEYED = re.compile(rb"^( *)((?:- )*)[^\s:'\"\[\]{},#&*!|>-][^:\[\]{},#]*: $")
_NEXT_LINE: dict[int, "re.Pattern[bytes]"] = {}


def _node_end(text: bytes, pos: int, col: int) -> int:
    """The end of the node whose first line holds ``pos``, owned by a key or dash in column ``col``:
    the newline before the next non-blank line indented ``col`` or less (or the end of ``text``)."""
    pat = _NEXT_LINE.get(col)
    if pat is None:
        pat = _NEXT_LINE[col] = re.compile(rb"\n {0,%d}[^ \n\r]" % col)
    m = pat.search(text, pos)
    return m.start() if m else len(text)


def _anchor_node(text: bytes, pos: int) -> tuple[int, int] | None:
    """The text span of the node anchored at ``pos`` (its ``&`` sign): from the anchor to the end of
    its node, when it is a list item's or a key's value in block style; None otherwise (an anchor
    inside a flow collection)."""
    ls = text.rfind(b"\n", 0, pos) + 1
    prefix = text[ls:pos]
    if prefix.strip(b" ") and set(prefix.rstrip(b" ")) <= {ord("-"), ord(" ")}:
        col = len(prefix.rstrip(b" ")) - 1  # "   - - &id": the last dash owns the node
    else:
        m = _KEYED.match(prefix)
        if m is None:
            return None
        col = len(m.group(1)) + len(m.group(2))
    return pos, _node_end(text, pos, col)


def _needed(yaml: bytes, anchors: dict, a: int, b: int) -> list[tuple[int, int]]:
    """The anchored nodes outside [a, b) that the text [a, b) refers to (and those they refer to),
    outermost only, in the order of the document (a KeyError when one has no node to copy)."""
    todo, spans = [(a, b)], set()
    while todo:
        s, e = todo.pop()
        own = set(_ANCHOR.findall(yaml, s, e))
        for name in set(_ALIAS.findall(yaml, s, e)) - own:
            span = anchors[name]
            if span is None:
                raise KeyError(name)
            if not (a <= span[0] < b) and span not in spans:
                spans.add(span)
                todo.append(span)
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if out and s < out[-1][1]:
            continue  # inside the previous one, defined with it
        out.append((s, e))
    return out


class CutWcs:
    """The WCS nodes cut out of a YAML document: ``parse(k)`` gives node ``k`` as asdf's tagged
    tree, parsed from its own text and the anchors it refers to."""

    def __init__(self, head: bytes, yaml: bytes, spans: list, anchors: dict):
        self._head, self._yaml, self._spans, self._anchors = head, yaml, spans, anchors

    def __len__(self):
        return len(self._spans)

    def _needed(self, a: int, b: int) -> list[tuple[int, int]]:
        return _needed(self._yaml, self._anchors, a, b)

    def parse(self, k: int):
        from asdf.yamlutil import load_tree

        a, b, value = self._spans[k]
        doc = [self._head, b"---\n"]
        needed = self._needed(a, b)
        if needed:
            doc.append(b"__anchors__:\n")
            for s, e in needed:
                doc += [b"- ", self._yaml[s:e], b"\n"]
        doc += [b"wcs: ", self._yaml[value:b], b"\n...\n"]
        import io

        return load_tree(io.BytesIO(b"".join(doc)))["wcs"]


def split_wcs_yaml(raw: bytes) -> tuple[bytes, CutWcs] | None:
    """``raw`` (an ASDF file's bytes) with each block-style gwcs ``wcs`` node of its YAML replaced by
    a placeholder of the same length (a ``CUT_TAG`` scalar: the node's number), and the nodes cut
    out; None when there is nothing to cut (or the YAML is not of the expected form)."""
    start = raw.find(b"\n---")
    end = _END.search(raw)
    if start < 0 or end is None or end.start() < start:
        return None
    head = raw[:start + 1]  # the header comments and the %YAML / %TAG directives
    yaml = raw[:end.start() + 1]
    keys = list(_WCS_KEY.finditer(yaml))
    if not keys:
        return None
    anchors: dict[bytes, tuple[int, int] | None] = {}
    for m in _ANCHOR.finditer(yaml):
        anchors[m.group(1)] = _anchor_node(yaml, m.start())
    spans = []  # (line start, node end, where the value starts)
    for m in keys:
        col = len(m.group(1)) + len(m.group(2))
        value = m.start() + col + len(b"wcs: ")
        spans.append((m.start(), _node_end(yaml, m.end(), col), value))
    # a node can be cut when every alias it holds to the outside has a node to copy, and nothing
    # outside the cut nodes refers to an anchor inside one
    inside = [set(_ANCHOR.findall(yaml, a, b)) for a, b, _v in spans]
    ok = []
    for a, b, _v in spans:
        try:
            _needed(yaml, anchors, a, b)
            ok.append(True)
        except KeyError:
            ok.append(False)
    while True:
        rest, pos = [], 0
        for (a, b, _v), cut in zip(spans, ok):
            if cut:
                rest.append(yaml[pos:a])
                pos = b
        rest.append(yaml[pos:])
        outside = set(_ALIAS.findall(b"".join(rest)))
        changed = False
        for i, own in enumerate(inside):
            if ok[i] and own & outside:
                ok[i], changed = False, True
        if not changed:
            break
    out, pos, cut_spans = [], 0, []
    for (a, b, v), cut in zip(spans, ok):
        if not cut:
            continue
        holder = yaml[a:v] + b"!<" + CUT_TAG.encode() + b"> " + str(len(cut_spans)).encode()
        if len(holder) > b - a:
            continue  # too short a node to hold the placeholder: left as it is
        out += [raw[pos:a], holder, b"\n" * (b - a - len(holder))]
        pos = b
        cut_spans.append((a, b, v))
    if not cut_spans:
        return None
    out.append(raw[pos:])
    return b"".join(out), CutWcs(head, yaml, cut_spans, anchors)
