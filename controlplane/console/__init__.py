"""The ops console: the control plane's own HTTP endpoint (health, metrics, Alertmanager's webhook)."""
