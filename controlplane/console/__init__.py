"""The ops console: the control plane's own HTTP endpoint (health now; metrics and pages later)."""
