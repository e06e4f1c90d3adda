"""erp_core: the core ERP (sales, purchasing, stock, double-entry finance)."""

__version__ = "1.1.0"
