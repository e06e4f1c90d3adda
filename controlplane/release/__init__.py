"""ERP releases: each installed from a wheel of this project into its own environment under the data
directory, one of them `current`, served by `erpctl up` as a child process.

The API (the upgrade engine switches releases and runs a release's ERP with it):

    install(target, wheel_path) -> Installed          # .release, .created (False: the same wheel was there)
    releases(target) -> list[Release]                 # complete installs only
    get(target, version) -> Release                   # ReleaseNotFound
    current(target) -> Release | None
    set_current(target, version, *, check_schema=True, reason="") -> dict   # atomic; evidence; never migrates
    remove(target, version, *, force=False) -> dict   # ReleaseInUse: current, served, needed by an upgrade
    check_database(target, release) -> dict           # the release's own erp_core.db.schema_status
    require_compatible(target, release) -> dict       # the same, ReleaseIncompatible when unsupported
    check_invariants(target, release, field_key=None) -> dict   # erp_core.invariants of that release
    migrate_with(target, release, revision="head") -> dict   # erp_core.db.migrate of that release
    ErpProcess(release, database_url, field_key, host=, port=)   # .start() .wait_serving() .wait_ready() .stop()
    Supervisor(target, field_key, host=, port=)        # what `erpctl up` runs: serve `current`, restart, follow

Layout and atomicity: see store.py; installing: install.py.
"""

from . import runner
from .install import Installed, install
from .process import ErpProcess
from .remove import remove
from .runner import check_database, check_invariants, require_compatible
from .store import Release, current, current_version, get, releases, releases_dir
from .switch import set_current
from .wheel import WheelInfo, inspect_wheel


def migrate_with(target, release, revision: str = "head") -> dict:
    """Migrate the target database to `revision` (default: `release`'s schema head) with that release's
    own migrations (alembic upgrade): {"from_revision", "to_revision"}."""
    return runner.call(release.python, "migrate", {"database_url": target.database_url, "revision": revision},
                       timeout=3600, what=f"release {release.version}")


__all__ = ["ErpProcess", "Installed", "Release", "WheelInfo", "check_database", "check_invariants", "current", "current_version", "get",
           "inspect_wheel", "install", "migrate_with", "releases", "releases_dir", "remove", "require_compatible",
           "set_current"]
