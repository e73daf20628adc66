"""asdf's tree walk of conversion, without its per-node overheads.

Every ASDF write converts the custom tree to a tagged one, and every read converts back, with
``asdf.treeutil.walk_and_modify`` (``yamlutil.custom_tree_to_tagged_tree``: preorder;
``tagged_tree_to_custom_tree``: postorder).  That walk pays, for every node of the tree (a NIRSpec
slit's gWCS is some 3,000), a generator-based context manager marking the node pending, two or three
nested helper calls and a generator per container: for a spec3 source's cal and crf products it was
more of the write than the converters it calls.

:func:`walk_and_modify` here is the same walk for those two calls (a one-argument callback and the
AsdfFile's modification context): the same order of callbacks, the same containers made (the
node's own class, its tag kept), a node met again (the same object) given its first result, a node
that is its own descendant handled as asdf handles it (a placeholder filled once the ancestor's
result exists), converters' generators drained when the outermost walk ends, ``RemoveNode`` dropped
from mappings.  It takes effect only inside :func:`fast_walks` (a context variable, so only for the
thread that asked: ``models._asdf_write.fast_walks``), when asdf's own function is called with those
arguments; any other call goes to asdf's function unchanged.
"""

from __future__ import annotations

import contextvars
import types

FAST = contextvars.ContextVar("webbflow_asdf_fast_walk", default=False)  # set by _asdf_write.fast_walks


def wrapped(original):
    """asdf's ``treeutil.walk_and_modify`` (``original``), walking with :func:`_walk` when :data:`FAST` is set
    and the call is one of the conversions' (installed by models/_asdf_write.py)."""

    def walk_and_modify(top, callback, postorder=True, _context=None):
        if FAST.get() and _context is not None and getattr(callback, "__code__", None) is not None \
                and callback.__code__.co_argcount == 1:
            return _walk(top, callback, postorder, _context)
        return original(top, callback, postorder, _context)

    walk_and_modify.__wrapped__ = original
    return walk_and_modify


def _walk(top, callback, postorder: bool, context):
    """``asdf.treeutil.walk_and_modify(top, callback, postorder, context)`` for a one-argument callback."""
    from asdf import lazy_nodes, tagged
    from asdf.treeutil import PendingValue, RemoveNode

    memo = context._map  # id(node) -> (node, result): the node kept alive, so that its id is not reused
    pending = context._pending
    add_generator = context.add_generator
    generator_type = types.GeneratorType
    mapping_types = (dict, lazy_nodes.AsdfDictNode)
    list_types = (list, lazy_nodes.AsdfListNode)
    ordered_node, dict_node, list_node = lazy_nodes.AsdfOrderedDictNode, lazy_nodes.AsdfDictNode, lazy_nodes.AsdfListNode
    tagged_type = tagged.Tagged
    leaf_types = frozenset((str, int, float, bool, type(None), bytes))

    def fill_mapping(result, late):
        yield result
        for key, value in late.items():
            if (val := recurse(value)) is not RemoveNode:
                result[key] = val
            else:
                del result[key]

    def fill_list(result, late):
        yield result
        for i, value in late.items():
            result[i] = recurse(value)

    def children(node):
        cls = type(node)
        if cls in leaf_types:  # the commonest nodes first, by exact type (isinstance on asdf's node classes goes through abc)
            return node
        if cls is dict or cls is list:
            result = cls()
            late = None
            for key, value in (node.items() if cls is dict else enumerate(node)):
                if id(value) in pending:  # its own ancestor: filled in once the walk has its result
                    if late is None:
                        late = {}
                    late[key] = value
                    val = PendingValue
                elif (val := recurse(value)) is RemoveNode and cls is dict:
                    continue
                if cls is dict:
                    result[key] = val
                else:
                    result.append(val)
            if late:
                add_generator((fill_mapping if cls is dict else fill_list)(result, late))
            return result
        if isinstance(node, mapping_types):
            if isinstance(node, ordered_node):
                from collections import OrderedDict

                result = OrderedDict()
            elif isinstance(node, dict_node):
                result = {}
            else:
                result = node.__class__()
            if isinstance(node, tagged_type):
                result._tag = node._tag
            late = None
            for key, value in node.items():
                if id(value) in pending:  # its own ancestor: filled in once the walk has its result
                    if late is None:
                        late = {}
                    late[key] = value
                    result[key] = PendingValue
                elif (val := recurse(value)) is not RemoveNode:
                    result[key] = val
            if late:
                add_generator(fill_mapping(result, late))
            return result
        if isinstance(node, tuple) and not hasattr(node, "_fields"):
            result = node.__class__([recurse(value) for value in node])
            if isinstance(node, tagged_type):
                result._tag = node._tag
            return result
        if isinstance(node, list_types):
            result = [] if isinstance(node, list_node) else node.__class__()
            if isinstance(node, tagged_type):
                result._tag = node._tag
            late = None
            for i, value in enumerate(node):
                if id(value) in pending:
                    if late is None:
                        late = {}
                    late[i] = value
                    result.append(PendingValue)
                else:
                    result.append(recurse(value))
            if late:
                add_generator(fill_list(result, late))
            return result
        return node

    def call(node):
        result = callback(node)
        if type(result) is generator_type:
            generator = result
            result = next(generator)
            add_generator(generator)
        return result

    def recurse(node):
        key = id(node)
        got = memo.get(key)
        if got is not None:
            return got[1]
        if key in pending:
            raise RuntimeError("Unhandled cycle in tree.  This is possibly a bug in extension code, which should "
                               "be yielding nodes that may contain reference cycles.")
        pending.add(key)
        try:
            result = call(children(node)) if postorder else children(call(node))
        finally:
            pending.discard(key)
        if key in memo:
            raise RuntimeError("Node already has an associated result")
        memo[key] = (node, result)
        return result

    with context:
        return recurse(top)
