"""controlplane: the operations layer around erp_core, driven by `erpctl` and the ops console."""

from erp_core.ops import __version__

__all__ = ["__version__"]
