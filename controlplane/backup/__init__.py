"""Backups that are proven to restore: capture, store, verify, restore."""
