"""Repository-root alias of `kdflow.kfp.components` (the components ship in the package; see README.md)."""

from kdflow.kfp.components import *  # noqa: F401,F403
