"""Association generation: pools in, ``_asn.json`` files out.

``pool`` reads association pools, ``rules`` declares the DMS rules, ``engine``
matches a pool against them (indexed by candidate and by each rule's
constraint keys, so the work grows about linearly with the pool), ``cli`` wires
``webbflow asn ...`` and ``flow`` wraps generation in a Prefect flow.
"""

__all__ = ["Association", "Pool", "generate", "read_pool"]

# imported on first use: ``webbflow run`` wires the ``asn`` subcommand without the rules' engine
_FROM = {"Association": "engine", "generate": "engine", "Pool": "pool", "read_pool": "pool"}


def __getattr__(name):
    if name in _FROM:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_FROM[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
