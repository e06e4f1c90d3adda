"""`python -m controlplane` is `erpctl`."""

from .cli.main import main

main()
