"""vlkit's built-in connectors (installed as ``vlkit.connectors``), registered exactly as a user's plug-in is.

Importing a module registers its connectors (``@CONNECTORS.register_module()``).
"""

from . import avgpool, c_abstractor, linear, mlp, perceiver, pixel_shuffle, qformer  # noqa: F401
