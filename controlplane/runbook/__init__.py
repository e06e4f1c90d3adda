"""Runbooks: runbooks/*.md parsed (parse.py) and run step by step with a log (engine.py), each run's
state kept in the data directory (records.py) so that a run killed mid-step, or one waiting for a
confirmation or a manual step, resumes where it stopped.

`shipped` is the project's runbooks/ directory (a symlink in the source tree, copied into the wheel),
so an installed erpctl finds the runbooks it ships; the setting runbooks_dir points elsewhere."""
