"""vlkit's built-in connectors, registered exactly as a user's plug-in is (``@CONNECTORS.register_module()``)."""

from . import linear, mlp, perceiver  # noqa: F401  (importing registers them)
