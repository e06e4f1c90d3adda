"""Staged upgrades of the ERP: expand, batched backfill, contract; and the migration linter."""
