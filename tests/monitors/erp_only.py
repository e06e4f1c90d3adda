"""Serve the ERP alone, without the control plane, on the database of an `erpctl up` data directory.

The end-to-end alerting test scrapes this process as the `erp` job and kills it (nothing restarts
it, unlike the ERP child of `erpctl up`), while the control plane of `erpctl up` keeps running to
receive the alert. The app and the server are erpctl up's: erp_core.app.create_app behind
erp_core.serve.Server (waitress).

    python tests/monitors/erp_only.py --data-dir DIR [--port N]

Prints {"port": N} on stdout once listening, then serves until killed.
"""

from __future__ import annotations

import argparse
import json

from controlplane import config
from erp_core.app import create_app
from erp_core.config import Settings
from erp_core.db import Database
from erp_core.serve import Server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    target = config.resolve(args.data_dir)
    key = config.field_key(target, create=False)
    db = Database(target.database_url)
    server = Server(create_app(Settings(target.database_url, field_key=key), db), port=args.port)
    print(json.dumps({"port": server.port}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
