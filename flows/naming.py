"""Product names now live in :mod:`webbflow.models.naming` (low in the stack, shared by tasks/ and
flows/); this module re-exports them so existing imports keep working."""

from ..models.naming import *  # noqa: F401,F403
from ..models.naming import KNOWN_SUFFIXES, product_path, root_of  # noqa: F401
