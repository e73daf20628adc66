"""Association generation: pools in, ``_asn.json`` files out.

``pool`` reads association pools, ``rules`` declares the DMS rules, ``engine``
matches a pool against them (indexed by candidate and by each rule's
constraint keys, so the work grows about linearly with the pool), ``cli`` wires
``webbflow asn ...`` and ``flow`` wraps generation in a Prefect flow.
"""

from .engine import Association, generate
from .pool import Pool, read_pool

__all__ = ["Association", "Pool", "generate", "read_pool"]
