"""Stopping and restarting this installation's `erpctl up`, and nothing else on the machine.

`erpctl up` records in runtime.json how it serves: its pid and that process's start time, the data
directory, host, ports, the database URL without its password and whether a systemd unit runs it
(controlplane/installation.py RuntimeRecord, version 2).

- running.py: the recorded `erpctl up`, verified to be that very process (same pid *and* start
  time, `erpctl up` on this data directory): a pid reused by another process is never signalled.
- stop.py: `erpctl stop`: SIGTERM (with SIGCONT, so a stopped process handles it), wait for the exit,
  SIGKILL after the grace; then an ERP child left behind by a killed `erpctl up` is stopped too.
  Idempotent: nothing running is a success that says so.
- restart.py: `erpctl restart`: the start plan (exactly the recorded host and ports, the database URL
  from the installation's settings and never a fallback to SQLite when it served another database)
  is made first, so a restart that cannot be done stops nothing; then stop, start `erpctl up` in the
  background (its output appended to erpctl-up.log) and wait until the ERP's /readyz answers 200.

Both hold the data directory's lifecycle lock (one at a time) and record what they did in the
evidence log (`erpctl.stop`, `erpctl.restart`).
"""
