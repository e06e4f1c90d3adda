"""Monitoring: probes (probes.py) and their jobs (jobs.py), the control plane's exporter
(exporter.py), the alerts Alertmanager sends (alerts.py), the monitoring secrets
(credentials.py), `erpctl up`'s monitoring service (service.py) and `erpctl status` (status.py)."""
