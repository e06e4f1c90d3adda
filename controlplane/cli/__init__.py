"""erpctl: one file per command, each with its click parser beside a thin handler
(parse, call a service, render). main.py builds the command tree and maps errors to exit codes."""
