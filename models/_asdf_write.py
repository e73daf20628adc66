"""Writing an ASDF tree that webbflow built itself, without asdf's schema validation pass.

asdf 5 validates every tree it writes against the schemas of all its tags (``yamlutil.dump_tree``
always calls ``schema.validate``), and ``config.validate_on_write`` does not turn that off.  For a
spectroscopic product that pass is most of the cost of writing: one gWCS per slit is thousands of
tagged transforms, each checked against its schema, and a spec3 run writes four products per
source.  The trees written here are made by our own models (pydantic-validated metadata, WCS
objects serialised by their registered converters), so the check finds nothing; what must be kept
is the pass's side effects, since they shape the YAML that is written:

- a schema's ``propertyOrder`` sets the order of a mapping's keys (the root tree's ``asdf_library``
  and ``history`` first; an ndarray's ``source, datatype, byteorder, shape``);
- ``flowStyle`` and ``style`` set how a list, mapping or string is emitted.

:func:`fast_write` writes the same bytes as ``asdf.AsdfFile(tree).write_to(f)``.  In its place of
the validation, each tagged node of the tree gets what its tag's schemas would give it:

- a schema that has such a directive only at its top level (the root's ``asdf-1.1.0``) has it
  applied to the node directly, as the validator applies it;
- a schema with a directive anywhere deeper (within ``properties``, ``anyOf`` branches, its
  definitions, or any schema it ``$ref``s: the ndarray schemas, and any schema referring to
  them) has its node validated in full by asdf, subtree included, so that the directives land
  exactly where the validator puts them;
- every other tagged node (the transforms, frames and steps of a WCS, which are almost all the
  tree) is not validated; its children are visited.

Which schemas carry directives is read from the schemas themselves (once per schema URI), not
listed here.  The switch is a context variable, consulted by a wrapper around
``asdf.schema.validate`` that is installed once: other threads, and any validation not made by a
write inside :func:`fast_write`, go to asdf's own validation unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading

_FAST = contextvars.ContextVar("webbflow_asdf_fast_write", default=False)
_DIRECTIVES = ("propertyOrder", "flowStyle", "style")
_install_lock = threading.Lock()
_installed = False
# schema URI -> (top-level directives {keyword: value}, whether a directive sits deeper)
_schema_info: dict[str, tuple[dict, bool]] = {}


def _install() -> None:
    global _installed
    if _installed:
        return
    with _install_lock:
        if _installed:
            return
        from asdf import schema

        original = schema.validate

        def validate(instance, ctx=None, schema=None, validators=None, reading=False, *args, **kwargs):
            if _FAST.get() and not reading and schema is None and validators is None and ctx is not None \
                    and not getattr(ctx, "_custom_schema", None) and not args and not kwargs:
                token = _FAST.set(False)  # the nodes validated in full below go through asdf's own validation
                try:
                    return _format_only(instance, ctx, original)
                finally:
                    _FAST.reset(token)
            return original(instance, ctx, schema, validators, reading, *args, **kwargs)

        validate.__wrapped__ = original
        schema.validate = validate
        from asdf import treeutil

        from ._asdf_walk import wrapped

        treeutil.walk_and_modify = wrapped(treeutil.walk_and_modify)  # used inside fast_walks() only
        from asdf import yamlutil

        yamlutil.AsdfDumper = _fast_dumper(yamlutil)  # its fast path inside no_write_validation() only
        _installed = True


_schemas_cached = False


def cache_parsed_schemas() -> None:
    """Parse each schema asdf's validator loads once a process, instead of at every validation.

    asdf 5.4's validator makes a new reference resolver for each tree it validates, and that
    resolver parses the YAML of every schema it is referred to (pure-Python pyyaml, about 5 ms a
    schema) again each time: a gWCS tree refers to some 150 schemas, so each file read or written
    re-parses them all.  Here the parsed schema is kept per URI (and per content, should a
    resource change); the validation itself is asdf's, unchanged.  Schemas are read, never
    modified, by the validator.
    """
    global _schemas_cached
    if _schemas_cached:
        return
    with _install_lock:
        if _schemas_cached:
            return
        from asdf import schema

        make = getattr(schema, "_make_schema_loader", None)
        if make is None:  # another asdf layout: left as it is
            _schemas_cached = True
            return
        cache: dict[str, tuple[object, object, str]] = {}

        def make_cached_loader():
            fallback = make()

            def load_schema(url):
                from asdf import get_config

                resources = get_config().resource_manager
                if url in resources:
                    content = resources[url]
                    got = cache.get(url)
                    if got is not None and (got[0] is content or got[0] == content):
                        return got[1], got[2]
                    result, uri = fallback(url)
                    cache[url] = (content, result, uri)
                    return result, uri
                return fallback(url)

            return load_schema

        schema._make_schema_loader = make_cached_loader
        _schemas_cached = True


@contextlib.contextmanager
def _switched_on(var: contextvars.ContextVar):
    _install()
    token = var.set(True)
    try:
        yield
    finally:
        var.reset(token)


def no_write_validation():
    """Inside, asdf writes trees without its schema validation (the formatting it implies kept)."""
    return _switched_on(_FAST)


def fast_walks():
    """Inside, asdf's conversions of a tree (on write and on read) walk it without ``walk_and_modify``'s
    per-node overheads (models/_asdf_walk.py)."""
    from ._asdf_walk import FAST

    return _switched_on(FAST)


def fast_write(tree: dict, f) -> None:
    """``asdf.AsdfFile(tree).write_to(f)``, the same bytes, without the schema validation pass."""
    import asdf

    # ``write_to`` works in a copy of the current config (``config_context``), and the copy lists
    # the resource mappings of every installed package from their entry points again unless the
    # config it copies has made its resource manager: made here once, shared by the copies
    asdf.get_config().resource_manager
    with no_write_validation(), fast_walks():  # and the tree converted without walk_and_modify's overheads
        asdf.AsdfFile(tree).write_to(f)


def _info(uri: str) -> tuple[dict, bool]:
    """A tag schema's top-level formatting directives, and whether any directive sits deeper in it
    or in a schema it refers to."""
    got = _schema_info.get(uri)
    if got is None:
        from asdf import schema as asdf_schema

        doc = asdf_schema.load_schema(uri)
        top = {k: doc[k] for k in _DIRECTIVES if isinstance(doc, dict) and k in doc}
        deeper = _deeper_directive(doc, uri, top=True, seen={uri})
        got = _schema_info[uri] = (top, deeper)
    return got


def _deeper_directive(node, base: str, top: bool, seen: set[str]) -> bool:
    from asdf import generic_io
    from asdf import schema as asdf_schema

    if isinstance(node, dict):
        for k, v in node.items():
            if k in _DIRECTIVES and not top:
                return True
            if k == "$ref" and isinstance(v, str):
                target = v.split("#", 1)[0]
                if target:  # a reference into another schema document: all of it is looked at
                    url = generic_io.resolve_uri(base, target)
                    if _ndarray_order(url) is not None:
                        # an array's node is tagged, and given its order on its own (:func:`_format_only`)
                        continue
                    if url not in seen:
                        seen.add(url)
                        try:
                            doc = asdf_schema.load_schema(url)
                        except Exception:  # noqa: BLE001 - unknown: be safe, validate that node in full
                            return True
                        if _deeper_directive(doc, url, top=False, seen=seen):
                            return True
                continue
            if k in ("examples", "description", "title"):
                continue
            if _deeper_directive(v, base, top=False, seen=seen):
                return True
    elif isinstance(node, list):
        return any(_deeper_directive(v, base, top=False, seen=seen) for v in node)
    return False


def _format_only(tree, ctx, full_validate) -> None:
    """Give each node of a tagged tree the formatting asdf's validation would give it."""
    from asdf import tagged

    manager = ctx.extension_manager
    stack = [tree]
    seen: set[int] = set()  # a node shared by several parents (a YAML anchor) is visited once
    full = []
    while stack:
        node = stack.pop()
        if isinstance(node, (dict, list)):
            if id(node) in seen:
                continue
            seen.add(id(node))
        tag = tagged.get_tag(node)
        if tag is not None and tag.startswith(_NDARRAY) and isinstance(node, tagged.TaggedDict):
            uris = manager.get_tag_definition(tag).schema_uris if manager.handles_tag_definition(tag) else ()
            order = _ndarray_order(uris[0]) if len(uris) == 1 else None
            if order is not None and _block_array(node):
                node.property_order = order  # all that the validator's pass gives such a node
            else:
                full.append(node)
            continue
        if tag is not None and manager.handles_tag_definition(tag):
            infos = [_info(u) for u in manager.get_tag_definition(tag).schema_uris]
            if any(deeper for _top, deeper in infos):
                full.append(node)
                continue
            for top, _deeper in infos:
                _apply(node, top)
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    if full:
        # one validator for all of them: validating a plain list validates each item by its tag
        full_validate(full, ctx)


_NDARRAY = "tag:stsci.edu:asdf/core/ndarray-"
_ndarray_orders: dict[str, list | None] = {}


def _ndarray_order(uri: str) -> list | None:
    """The ``propertyOrder`` that an ndarray schema (``uri``) gives an array stored in a block: the
    order of its object branch, when that is the schema's only directive; None for any other schema."""
    if uri in _ndarray_orders:
        return _ndarray_orders[uri]
    order = None
    if "/core/ndarray-" in uri:
        from asdf import schema as asdf_schema

        try:
            doc = asdf_schema.load_schema(uri)
        except Exception:  # noqa: BLE001 - not a schema we know: validated in full as before
            doc = None
        branches = doc.get("anyOf") if isinstance(doc, dict) else None
        if isinstance(branches, list):
            objects = [b for b in branches if isinstance(b, dict) and b.get("type") == "object"]
            if len(objects) == 1 and isinstance(objects[0].get("propertyOrder"), list) \
                    and _count_directives(doc) == 1:
                order = list(objects[0]["propertyOrder"])
    _ndarray_orders[uri] = order
    return order


def _count_directives(node) -> int:
    """How many formatting directives sit in a schema document (its own text, references not followed)."""
    if isinstance(node, dict):
        return sum(k in _DIRECTIVES for k in node) + sum(_count_directives(v) for k, v in node.items()
                                                          if k not in ("examples", "description", "title"))
    if isinstance(node, list):
        return sum(_count_directives(v) for v in node)
    return 0


def _block_array(node) -> bool:
    """An ndarray node of a block (an integer source, a scalar datatype, a shape of integers), nothing more:
    the validator's only effect on it is its object branch's property order."""
    data = node.data if hasattr(node, "data") else node
    if not set(data) <= {"source", "datatype", "byteorder", "shape"} or type(data.get("source")) is not int:
        return False
    shape = data.get("shape", [])
    return type(data.get("datatype")) is str and type(data.get("byteorder", "")) is str and type(shape) is list \
        and all(type(n) is int for n in shape)


def _apply(node, directives: dict) -> None:
    """The validator's three formatting keywords, with the same type conditions."""
    for key, value in directives.items():
        if key == "propertyOrder":
            if isinstance(node, dict) and value:
                node.property_order = value
        elif key == "flowStyle":
            if isinstance(node, (dict, list)):
                node.flow_style = value
        elif key == "style" and isinstance(node, str):
            node.style = value


def _fast_dumper(yamlutil):
    """A subclass of asdf's ``AsdfDumper`` that builds the same YAML nodes for the tree's plain and tagged
    dicts, lists and scalars with less work per node, when made inside :func:`no_write_validation`.

    pyyaml's ``represent_data`` asks each node whether it may be an alias (``ignore_aliases``:
    isinstance checks), walks its class's MRO for a representer, and asdf's wrapper looks up a tag
    on every scalar; a slit's gWCS is some 5,000 nodes, and building them was as long as converting
    the WCS.  Here the node is made at once for each type whose representer is the one pyyaml or
    asdf registers (checked when the class is made), with the same tag, style and flow style, keys
    sorted as pyyaml sorts them, asdf's property order applied, and the same aliasing: a dict or list
    met again (the same object) gives its first node, scalars never do.  Any other type (numpy
    scalars, ordered dicts, tagged strings, a representer replaced by another package) goes to
    ``AsdfDumper.represent_data`` unchanged.  The C emitter then writes the same bytes.
    """
    from asdf import tagged
    from yaml.nodes import MappingNode, ScalarNode, SequenceNode
    from yaml.representer import BaseRepresenter, SafeRepresenter

    base = yamlutil.AsdfDumper
    expected = {
        str: SafeRepresenter.represent_str, int: SafeRepresenter.represent_int,
        bool: SafeRepresenter.represent_bool, float: SafeRepresenter.represent_float,
        type(None): SafeRepresenter.represent_none, dict: SafeRepresenter.represent_dict,
        list: SafeRepresenter.represent_list, tagged.TaggedDict: yamlutil.represent_mapping,
        tagged.TaggedList: yamlutil.represent_sequence,
    }
    plain = base.represent_data
    flow_styles = {"flow": True, "block": False}
    str_tag, int_tag, bool_tag = "tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:bool"
    null_tag, map_tag, seq_tag = "tag:yaml.org,2002:null", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
    # what the nodes below are made as: pyyaml's own node building under asdf's wrapper
    ours = (BaseRepresenter.represent_data, BaseRepresenter.represent_scalar, BaseRepresenter.represent_sequence,
            BaseRepresenter.represent_mapping, SafeRepresenter.ignore_aliases)
    same = all(getattr(base.__mro__[1], f.__name__) is f for f in ours)

    class FastAsdfDumper(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            reps = type(self).yaml_representers  # as registered now (a package may have added its own)
            self._fast_types = frozenset(t for t, f in expected.items() if reps.get(t) is f) \
                if same and _FAST.get() else frozenset()

        def represent_data(self, data):
            t = type(data)
            if t not in self._fast_types:
                return plain(self, data)
            if t is str:
                self.alias_key = None
                return ScalarNode(str_tag, data, style=self.default_style)
            if t is dict or t is tagged.TaggedDict or t is list or t is tagged.TaggedList:
                return self._container(data, t)
            self.alias_key = None
            if t is float:
                return self.represent_float(data)
            if t is int:
                value, tag = str(data), int_tag
            elif t is bool:
                value, tag = ("true" if data else "false"), bool_tag
            else:
                value, tag = "null", null_tag
            return ScalarNode(tag, value, style=self.default_style)

        def _container(self, data, t):
            key = id(data)
            self.alias_key = key
            node = self.represented_objects.get(key)
            is_tagged = t is tagged.TaggedDict or t is tagged.TaggedList
            if node is None:
                self.object_keeper.append(data)
                mapping = t is dict or t is tagged.TaggedDict
                flow_style = flow_styles.get(data.flow_style) if is_tagged else None
                tag = None if is_tagged else map_tag if mapping else seq_tag
                value = []
                node = (MappingNode if mapping else SequenceNode)(tag, value, flow_style=flow_style)
                self.represented_objects[key] = node
                items = data.data if is_tagged else data
                best_style = self._mapping_items(items, value) if mapping else self._sequence_items(items, value)
                if flow_style is None:
                    node.flow_style = self.default_flow_style if self.default_flow_style is not None else best_style
                order = data.property_order if t is tagged.TaggedDict else None
                if order:  # asdf's represent_mapping: the schema's keys first, in its order, then the others
                    by_key = {k.value: (k, v) for k, v in value}
                    first = [by_key[k] for k in order if k in data]
                    listed = set(order)
                    node.value = first + [(k, v) for k, v in value if k.value not in listed]
            if is_tagged:
                tag = data._tag
                if tag is not None:
                    node.tag = tag
            return node

        def _mapping_items(self, items, value) -> bool:
            """The key and value nodes of a mapping's items, sorted as pyyaml sorts them, appended to
            ``value``; whether all are plain scalars (pyyaml's best flow style)."""
            items = list(items.items())
            if self.sort_keys:
                try:
                    items = sorted(items)
                except TypeError:
                    pass
            best_style = True
            represent = self.represent_data
            for item_key, item_value in items:
                node_key = represent(item_key)
                node_value = represent(item_value)
                if best_style and not (isinstance(node_key, ScalarNode) and not node_key.style
                                       and isinstance(node_value, ScalarNode) and not node_value.style):
                    best_style = False
                value.append((node_key, node_value))
            return best_style

        def _sequence_items(self, items, value) -> bool:
            best_style = True
            represent = self.represent_data
            for item in items:
                node_item = represent(item)
                if best_style and not (isinstance(node_item, ScalarNode) and not node_item.style):
                    best_style = False
                value.append(node_item)
            return best_style

    FastAsdfDumper.__name__ = FastAsdfDumper.__qualname__ = "AsdfDumper"
    return FastAsdfDumper
