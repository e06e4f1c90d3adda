"""The control plane's typed errors.

They extend erp_core's ErpError (a message, a fix, an HTTP status and a CLI exit code), so the
CLI (controlplane/cli/main.py) and the ops console map both families the same way, in one place.
Exit codes 1-8 belong to the ERP's errors (erp_core/errors.py); the control plane's start at 10.
"""

from __future__ import annotations

from erp_core.errors import ErpError


class ControlPlaneError(ErpError):
    """An operation of the control plane failed in a way it can explain."""

    status, exit_code, title = 500, 10, "Control plane error"


class CannotListen(ControlPlaneError):
    """A port is taken (or the address cannot be bound)."""

    status, exit_code, title = 409, 11, "Cannot listen"


class DatabaseUnavailable(ControlPlaneError):
    """The database did not answer."""

    status, exit_code, title = 503, 12, "Database unavailable"


class InvariantsViolated(ControlPlaneError):
    """erp_core.invariants found broken business rules."""

    status, exit_code, title = 409, 13, "Invariants violated"


class DataDirProblem(ControlPlaneError):
    """The data directory or a file in it cannot be used."""

    status, exit_code, title = 500, 14, "Data directory problem"


class SettingInvalid(ControlPlaneError):
    """An operator setting (a flag, an environment variable, erpctl.toml) has a value it cannot take."""

    status, exit_code, title = 400, 2, "Invalid setting"


class Interrupted(ControlPlaneError):
    """Stopped by a signal before the work was done."""

    status, exit_code, title = 503, 130, "Interrupted"


# ---- backups (controlplane/backup) --------------------------------------------------------------

class BackupError(ControlPlaneError):
    """A backup repository operation failed."""

    status, exit_code, title = 500, 20, "Backup error"


class WrongKey(BackupError):
    """The passphrase or key file does not open the backup repository."""

    status, exit_code, title = 403, 21, "Wrong backup key"


class StoreUnreachable(BackupError):
    """The backup store (a directory or an S3 bucket) cannot be reached or refuses access."""

    status, exit_code, title = 503, 22, "Backup store unreachable"


class DiskFull(BackupError):
    """No space left on a disk: where a backup (or its temporary snapshot) is written, or the
    database's own files (any erpctl command that writes to the database)."""

    status, exit_code, title = 507, 23, "Disk full"


class RepositoryLocked(BackupError):
    """Another run holds a conflicting lock on the backup repository."""

    status, exit_code, title = 409, 24, "Backup repository locked"


class BackupNotFound(BackupError):
    """No backup in the repository has that id (or the prefix is ambiguous)."""

    status, exit_code, title = 404, 25, "Backup not found"


class ChunkCorrupt(BackupError):
    """A stored chunk is missing, fails authentication or does not hash to its id."""

    status, exit_code, title = 500, 26, "Backup chunk corrupt"


class RepositoryNotInitialised(BackupError):
    """There is no backup repository at that location (yet)."""

    status, exit_code, title = 404, 27, "Backup repository not initialised"


# ---- verification, restore, evidence (controlplane/backup/verify.py, restore.py; evidence.py) -------

class VerificationFailed(BackupError):
    """A backup failed a level of the verification ladder (the result names the chunk, table or invariant)."""

    status, exit_code, title = 422, 28, "Backup verification failed"


class RestoreRefused(BackupError):
    """The backup failed verification, so it was not swapped in; the live data is untouched."""

    status, exit_code, title = 422, 29, "Restore refused"


class RestoreFailed(BackupError):
    """The restore could not complete; it was rolled back and the live data is untouched."""

    status, exit_code, title = 500, 30, "Restore failed"


class WritesWouldBeDiscarded(BackupError):
    """Restoring in place discards the writes made since the backup, and the operator did not confirm
    their number (--discard-writes N); nothing was changed."""

    status, exit_code, title = 409, 31, "Restore would discard writes"


class EvidenceTampered(ControlPlaneError):
    """The evidence log has a record that was altered, removed or reordered."""

    status, exit_code, title = 409, 15, "Evidence log altered"


class EvidenceKeyRefused(ControlPlaneError):
    """The evidence signing key (or a public key given to check records) cannot be used."""

    status, exit_code, title = 409, 18, "Evidence key refused"


class EvidenceFileUnattested(ControlPlaneError):
    """No evidence record attests the file as it is (changed since, or never attested)."""

    status, exit_code, title = 409, 19, "File not attested"


# ---- erpctl status (controlplane/cli/status.py) -------------------------------------------------

class NeedsAttention(ControlPlaneError):
    """erpctl status found something that needs attention (warnings only)."""

    status, exit_code, title = 200, 16, "Needs attention"


class Critical(NeedsAttention):
    """erpctl status found something critical (the ERP down or not ready, a critical alert...)."""

    status, exit_code, title = 200, 17, "Critical"




# ---- erpctl stop, erpctl restart (controlplane/lifecycle) ---------------------------------------

class StopFailed(ControlPlaneError):
    """erpctl stop could not end this installation's erpctl up (not allowed to signal it, or it outlived SIGKILL)."""

    status, exit_code, title = 500, 50, "Stop failed"


class RestartRefused(ControlPlaneError):
    """erpctl restart cannot start erpctl up again exactly as it served (nothing recorded, a database it would not
    reach the same way, a systemd unit runs it); nothing was stopped."""

    status, exit_code, title = 409, 51, "Restart refused"


class StartFailed(ControlPlaneError):
    """The erpctl up that erpctl restart started was not ready in time; one that exited passes its own exit code on
    (11 port taken, 12 database down, 8 schema, 14 data directory...)."""

    status, exit_code, title = 503, 52, "Start failed"

    def __init__(self, detail: str, *, exit_code: int | None = None, **kw):
        super().__init__(detail, **kw)
        if exit_code is not None:
            self.exit_code = exit_code


# ---- runbooks (controlplane/runbook, erpctl runbook) ----------------------------------------------

class RunbookStepFailed(ControlPlaneError):
    """A Recover step's command exited non-zero: the run stopped there (status failed)."""

    status, exit_code, title = 500, 60, "Runbook step failed"


class RunbookWaitingConfirmation(ControlPlaneError):
    """A `confirm` block needs a yes and nobody could give it (stdin not a terminal, no --yes): the run is paused,
    `erpctl runbook resume RUN_ID --yes` continues it."""

    status, exit_code, title = 409, 61, "Runbook waiting for confirmation"


class RunbookWaitingManual(ControlPlaneError):
    """A manual Recover step (no command block) waits for people: `erpctl runbook resume RUN_ID --done` once done."""

    status, exit_code, title = 409, 62, "Runbook waiting for a manual step"


class RunbookNotRecovered(ControlPlaneError):
    """The run went to its end but a Check recovery command exited non-zero."""

    status, exit_code, title = 409, 63, "Not recovered"


class RunbookNotFound(ControlPlaneError):
    """No runbook of that name or id (or no runbooks directory)."""

    status, exit_code, title = 404, 64, "Runbook not found"


class RunbookInvalid(ControlPlaneError):
    """The runbook file is not of the shape the engine runs (runbooks/README.md)."""

    status, exit_code, title = 422, 65, "Runbook invalid"


class RunNotResumable(ControlPlaneError):
    """No run of that id, it has finished, it runs in another process, or its runbook changed since it started."""

    status, exit_code, title = 409, 66, "Run cannot be resumed"


# ---- the field key's escrow (controlplane/escrow.py) --------------------------------------------

class EscrowMissing(ControlPlaneError):
    """No escrow copy, or no escrow secret to make or open one with."""

    status, exit_code, title = 404, 90, "No field-key escrow"


class EscrowLocked(ControlPlaneError):
    """The escrow copy cannot be opened with the secret given (wrong passphrase or private key, or damaged)."""

    status, exit_code, title = 403, 91, "Escrow copy cannot be opened"


class FieldKeyWrong(ControlPlaneError):
    """The field key does not decrypt the encrypted fields stored in the database."""

    status, exit_code, title = 409, 92, "Field key does not decrypt the stored fields"


class IntegrityFailed(ControlPlaneError):
    """The database engine's integrity check found damage (erpctl erp integrity)."""

    status, exit_code, title = 500, 93, "Database integrity check failed"
# ---- drills (controlplane/drills) ---------------------------------------------------------------

class DrillError(ControlPlaneError):
    """A drill could not be prepared or run."""

    status, exit_code, title = 500, 72, "Drill error"


class ScenarioNotFound(DrillError):
    """No drill scenario of that name (erpctl drill scenarios lists them)."""

    status, exit_code, title = 404, 73, "Drill scenario not found"


class ScenarioInvalid(DrillError):
    """A drill scenario file does not follow the schema (runbooks/drills/README.md)."""

    status, exit_code, title = 422, 74, "Drill scenario invalid"


class DrillBusy(DrillError):
    """Another drill is running on this data directory."""

    status, exit_code, title = 409, 75, "Drill busy"


class DrillFailed(DrillError):
    """The drill ran and failed: the recovery did not work or an objective was missed (the record says which)."""

    status, exit_code, title = 500, 76, "Drill failed"


class NoBackupForDrill(DrillError):
    """The sandbox is restored from the latest verified backup, and there is none."""

    status, exit_code, title = 409, 77, "No backup for the drill"


class LiveDrillRefused(DrillError):
    """A drill on the live installation needs recorded approvals, a window, and no destructive fault."""

    status, exit_code, title = 403, 78, "Live drill refused"


# ---- upgrades (controlplane/upgrade) ------------------------------------------------------------

class UpgradeError(ControlPlaneError):
    """An upgrade step failed."""

    status, exit_code, title = 500, 41, "Upgrade error"


class UpgradeBusy(UpgradeError):
    """Another upgrade, rollback or resume is running on this data directory."""

    status, exit_code, title = 409, 42, "Upgrade busy"


class PreflightFailed(UpgradeError):
    """The upgrade's preflight found a reason not to start; nothing was changed."""

    status, exit_code, title = 409, 43, "Upgrade preflight failed"


class UpgradeFailed(UpgradeError):
    """A stage failed or its verification found a mismatch; the upgrade was rolled back."""

    status, exit_code, title = 409, 44, "Upgrade failed and was rolled back"


class NoUpgrade(UpgradeError):
    """There is no upgrade in progress (or nothing to upgrade to)."""

    status, exit_code, title = 404, 45, "No upgrade"


class RollbackNeedsRestore(UpgradeError):
    """The contract stage has run: going back means restoring the pre-upgrade backup, which loses writes."""

    status, exit_code, title = 409, 46, "Rollback needs a restore"


class UpgradeInterrupted(UpgradeError):
    """The upgrade in progress has no process working on it any more (killed, or the machine restarted):
    it waits for 'erpctl upgrade resume' or 'erpctl upgrade rollback'."""

    status, exit_code, title = 409, 47, "Upgrade interrupted"


# ---- ERP releases (controlplane/release) ---------------------------------------------------------

class ReleaseError(ControlPlaneError):
    """An ERP release could not be installed, switched to or served."""

    status, exit_code, title = 500, 35, "Release error"


class ReleaseNotFound(ReleaseError):
    """No release of that version is installed (or no release is current)."""

    status, exit_code, title = 404, 36, "Release not found"


class BadWheel(ReleaseError):
    """The file is not a wheel of this project (not a wheel, another project, a corrupt archive)."""

    status, exit_code, title = 422, 37, "Not a release wheel"


class ReleaseIncompatible(ReleaseError):
    """The release's code cannot run on the database's schema (its own schema check says why)."""

    status, exit_code, title = 409, 38, "Release incompatible with the database"


class ReleaseConflict(ReleaseError):
    """A release of that version is already installed from a different wheel."""

    status, exit_code, title = 409, 39, "Release conflict"


class ReleaseInUse(ReleaseError):
    """The release is current, or an upgrade (in progress, or the last one: its rollback) needs it."""

    status, exit_code, title = 409, 34, "Release in use"


class ReleaseUntrusted(ReleaseError):
    """The wheel has no signature, a signature by a key the installation does not trust, or one that
    does not match its bytes: nothing of it was opened or installed."""

    status, exit_code, title = 403, 32, "Release not trusted"




# ---- drill reports, approvals, sign-off (controlplane/drills/report.py, approvals.py, review.py) -------

class DrillNotFound(ControlPlaneError):
    """No drill of that id in this data directory (erpctl drill list shows them)."""

    status, exit_code, title = 404, 80, "Drill not found"


class LiveDrillNotApproved(ControlPlaneError):
    """A live drill needs two approvals by two different named people other than its operator, a maintenance
    window containing now, and a scenario that does not destroy data; the message names what is missing."""

    status, exit_code, title = 403, 81, "Live drill not approved"


class DrillEditRefused(ControlPlaneError):
    """The drill's record cannot take this sign-off or finding: the drill is still running, or the change
    repeats one already recorded."""

    status, exit_code, title = 409, 82, "Drill record change refused"


class ApprovalRefused(ControlPlaneError):
    """The approval cannot be recorded: unknown scenario, a destructive one, or a window that is not a
    future interval."""

    status, exit_code, title = 422, 83, "Approval refused"


class NoPdfRenderer(ControlPlaneError):
    """A PDF report needs headless Chromium, and none is installed (or it failed to print)."""

    status, exit_code, title = 503, 84, "No PDF renderer"


# ---- the migration linter (controlplane/upgrade/lint/, erpctl upgrade lint) ---------------------

class MigrationLintFailed(ControlPlaneError):
    """Migrations break the staged-upgrade rules (each finding names the file, line, rule and fix)."""

    status, exit_code, title = 422, 40, "Migration lint failed"


# ---- the fleet (controlplane/remote, erpctl fleet) ------------------------------------------------

class FleetError(ControlPlaneError):
    """A fleet operation failed: the inventory cannot be used, or no host matched."""

    status, exit_code, title = 422, 100, "Fleet error"


class HostUnreachable(FleetError):
    """A host did not answer over SSH in time, or refused the login."""

    status, exit_code, title = 503, 101, "Host unreachable"


class HostKeyRefused(FleetError):
    """A host offered a key that is not in the known-hosts file (unknown or changed): not connected."""

    status, exit_code, title = 409, 102, "Host key refused"


class RemoteCommandFailed(FleetError):
    """A command exited non-zero (or ran past its timeout) on a host."""

    status, exit_code, title = 500, 103, "Remote command failed"


class ConsoleUserRefused(ControlPlaneError):
    """A console account was refused: an unknown role, a name that is not 1-64 letters, digits, '.', '_'
    or '-', or a password under 12 characters or equal to the name."""

    status, exit_code, title = 400, 53, "Console account refused"


class ConsoleUserExists(ControlPlaneError):
    """A console account of that name already exists ('erpctl console user list' shows them)."""

    status, exit_code, title = 409, 54, "Console account exists"


class ConsoleUserNotFound(ControlPlaneError):
    """No console account of that name ('erpctl console user list' shows them)."""

    status, exit_code, title = 404, 55, "Console account not found"


# ---- point-in-time recovery and failover (controlplane/pitr) --------------------------------------

class PitrError(ControlPlaneError):
    """A point-in-time recovery operation failed: pgBackRest or PostgreSQL said why."""

    status, exit_code, title = 500, 112, "Point-in-time recovery error"


class PitrNotConfigured(PitrError):
    """Point-in-time recovery is not set up, or PostgreSQL does not archive its WAL to pgBackRest."""

    status, exit_code, title = 409, 113, "Point-in-time recovery not configured"


class PitrTargetInvalid(PitrError):
    """The recovery target cannot be reached: not a time or transaction id, before the first backup,
    or past the last archived WAL."""

    status, exit_code, title = 422, 114, "Recovery target invalid"


class PitrVerificationFailed(PitrError):
    """The restored cluster failed the verification ladder: stopped and removed, the live one untouched."""

    status, exit_code, title = 409, 115, "Restored cluster failed verification"


class FailoverRefused(FleetError):
    """The old primary still answers (two primaries would take writes): nothing was promoted."""

    status, exit_code, title = 409, 116, "Failover refused"


class FailoverFailed(FleetError):
    """The standby could not be promoted (not a standby, unreachable, still in recovery)."""

    status, exit_code, title = 500, 117, "Failover failed"


class PitrRepoUnreachable(PitrError):
    """pgBackRest's repository cannot be read or written."""

    status, exit_code, title = 503, 118, "pgBackRest repository unreachable"


class FleetUpgradeRolledBack(FleetError):
    """The rolling upgrade failed on a host and was undone: every app host serves its previous release again."""

    status, exit_code, title = 500, 104, "Rolling upgrade failed and put back"


class FleetRestoreNotConfirmed(FleetError):
    """A fleet restore replaces the live database of every app host: refused without its confirmation
    ('erpctl fleet restore ID --yes'); nothing was changed."""

    status, exit_code, title = 409, 56, "Fleet restore not confirmed"


class FleetRestoreFailed(FleetError):
    """The fleet's restore (restore.yml) failed: before the hosts were drained nothing changed; after, every app
    host is left drained in HAProxy (none serves a database that was not restored and verified)."""

    status, exit_code, title = 500, 57, "Fleet restore failed"


class FleetDrillFailed(FleetError):
    """A drill run on a fleet host failed or was aborted, or its report fetched back does not verify."""

    status, exit_code, title = 500, 58, "Fleet drill failed"


class SecretRotationRefused(FleetError):
    """A secret the fleet cannot rotate without downtime or risk was asked for: nothing was changed."""

    status, exit_code, title = 409, 59, "Secret rotation refused"


# ---- what a database error means -----------------------------------------------------------------

# How the databases say that their disk is full: SQLite's SQLITE_FULL, PostgreSQL's SQLSTATE 53100.
_DISK_FULL_MESSAGES = ("database or disk is full", "no space left on device")
_DISK_FULL_SQLSTATE = "53100"
# SQLite in WAL mode says only "disk I/O error" when its -wal or -shm file cannot grow; the space
# left on the database file's filesystem tells a full disk from a failing one.
_SQLITE_IO_ERROR = "disk i/o error"
NEARLY_FULL_BYTES = 1 << 20


def database_error(exc, sqlite_path=None) -> ControlPlaneError:
    """A database driver's OperationalError (SQLAlchemy's) as a typed error: a full disk (exit 23, with
    the fix), else a database that does not answer (exit 12). sqlite_path: the database's file, when
    it is SQLite (its filesystem's free space is checked)."""
    import os

    said = str(getattr(exc, "orig", exc)).strip()
    full = getattr(getattr(exc, "orig", None), "sqlstate", None) == _DISK_FULL_SQLSTATE or \
        any(m in said.lower() for m in _DISK_FULL_MESSAGES)
    if not full and sqlite_path is not None and _SQLITE_IO_ERROR in said.lower():
        try:
            st = os.statvfs(os.path.dirname(os.path.abspath(sqlite_path)))
            full = st.f_bavail * st.f_frsize < NEARLY_FULL_BYTES
        except OSError:
            full = False
    if full:
        return DiskFull(f"the database could not write: its disk is full ({said})",
                        fix="Free space on the database's filesystem (the DiskSpaceLow runbook: old logs, "
                            "temporary files, 'erpctl backup prune' with a retention), then run the command "
                            "again; nothing was changed.")
    return DatabaseUnavailable(f"the database did not answer: {said}",
                               fix="Check that the database server runs and that --database-url "
                                   "(or ERPCTL_DATABASE_URL) points at it; see runbooks/.")


EXIT_CODES = {
    0: "success",
    1: "ERP error (generic)",
    2: "invalid input or command-line usage",
    3: "not authenticated or permission denied",
    4: "not found",
    5: "conflict (already exists, wrong state, insufficient stock)",
    6: "too many requests",
    7: "the ERP is in maintenance mode",
    8: "database schema not supported by this code (migrate it, or upgrade erpctl)",
    10: "control plane error (generic)",
    11: "cannot listen on a port (taken, or not allowed)",
    12: "database unavailable",
    13: "invariant violations found",
    14: "data directory problem",
    15: "evidence log altered, removed or reordered records, a bad signature, or an anchor that disagrees "
        "(erpctl evidence verify)",
    16: "erpctl status: something needs attention (warnings; listed on stdout)",
    17: "erpctl status: something is critical (ERP down or not ready, a critical alert...; listed on stdout)",
    18: "evidence key refused: the signing key file is readable by others or unreadable, or a public key "
        "file holds no key",
    19: "erpctl evidence check-file: no evidence record attests the file as it is (changed, or never attested)",
    20: "backup error (generic)",
    21: "wrong backup key (passphrase or key file)",
    22: "backup store unreachable (directory or S3)",
    23: "disk full",
    24: "backup repository locked by another run",
    25: "backup not found",
    26: "backup chunk corrupt or missing",
    27: "backup repository not initialised",
    28: "backup verification failed (erpctl backup verify names what)",
    29: "restore refused: the backup failed verification, live data untouched",
    30: "restore failed and was rolled back, live data untouched",
    31: "restore refused: it discards writes made since the backup and --discard-writes did not name their "
        "number (--dry-run lists them); nothing changed",
    32: "release not trusted: unsigned, signed by an untrusted key, or altered since it was signed (nothing "
        "of it ran)",
    34: "release in use (current, or needed by an upgrade or its rollback): not removed",
    35: "release error (generic): a release could not be installed, switched to or served",
    36: "release not found (erpctl release list shows the installed ones)",
    37: "not a release wheel (not a wheel, another project, or a corrupt archive)",
    38: "the release's code cannot run on the database's schema (switch refused)",
    39: "a release of that version is already installed from a different wheel",
    40: "erpctl upgrade lint: a migration breaks the staged-upgrade rules (file:line, rule and fix)",
    41: "upgrade error (generic)",
    42: "another upgrade, resume or rollback is running on this data directory",
    43: "upgrade preflight refused (the checks say why); nothing was changed",
    44: "upgrade failed and was rolled back to the old release and schema",
    45: "no upgrade in progress, or nothing to upgrade",
    46: "rollback after contract needs --restore-backup (the writes it loses are listed)",
    47: "erpctl upgrade status: the upgrade in progress was interrupted (its process is gone); "
        "run 'erpctl upgrade resume' or 'erpctl upgrade rollback'",
    50: "erpctl stop: this installation's erpctl up did not end (not allowed to signal it, or it outlived SIGKILL)",
    51: "erpctl restart refused: erpctl up cannot be started again as it served (the message says why); "
        "nothing was stopped",
    52: "erpctl restart: the new erpctl up was not ready in time (one that exits passes its own exit code on)",
    53: "console account refused: unknown role, a bad name, or a password under 12 characters or equal to the "
        "name",
    54: "console account already exists",
    55: "console account not found (erpctl console user list shows them)",
    58: "erpctl fleet drill: the drill failed or was aborted on the host, or its fetched report does not verify",
    59: "erpctl fleet rotate-secrets: a secret that cannot be rotated safely was asked for (the message says how "
        "to rotate it by hand); nothing was changed",
    60: "erpctl runbook: a Recover step's command failed; the run stopped there (status failed)",
    61: "erpctl runbook: paused before a confirm block (no terminal, no --yes); resume RUN_ID --yes continues",
    62: "erpctl runbook: paused at a manual step; resume RUN_ID --done once it is done",
    63: "erpctl runbook: the run ended, but a Check recovery command exited non-zero (not recovered)",
    64: "runbook not found (erpctl runbook list shows them)",
    65: "runbook invalid: not of the shape runbooks/README.md describes",
    66: "run cannot be resumed: unknown id, finished, running in another process, or its runbook changed",
    70: "internal error (a bug: see the log)",
    80: "drill not found (erpctl drill list shows them)",
    81: "live drill not approved: two approvals by two other named people, a window containing now, and no "
        "destructive fault are needed (the message names what is missing)",
    82: "drill record change refused: the drill is still running, or that sign-off or finding is already recorded",
    83: "approval refused: unknown or destructive scenario, or a window that is not a future START/END",
    84: "no PDF renderer: headless Chromium is needed for --format pdf (apt-get install chromium)",
    90: "erpctl field-key: no escrow copy, or no escrow secret to make or open one with",
    91: "erpctl field-key: the escrow copy does not open with the passphrase or private key given",
    92: "erpctl field-key: the field key does not decrypt the encrypted fields stored in the database",
    93: "erpctl erp integrity: the database failed the engine's integrity check (the problems are named)",
    100: "erpctl fleet: the inventory cannot be used (missing, not Ansible YAML), or no host matches --limit",
    101: "erpctl fleet: a host was unreachable (connect or login timed out or was refused); the others ran",
    102: "erpctl fleet: a host's key is unknown or changed (the message names the host and the offered key's "
        "SHA256 fingerprint); not connected. 'erpctl fleet trust HOST --fingerprint' records a checked key",
    103: "erpctl fleet: a command exited non-zero or timed out on a host (per-host results say which)",
    104: "erpctl fleet upgrade: the rolling upgrade failed on a host and was undone (the previous release is "
         "current and ready on every app host again, the staged migration rolled back); the output says why",
    72: "drill error (generic): the sandbox could not be prepared or the drill could not run",
    73: "drill scenario not found (erpctl drill scenarios lists them)",
    74: "drill scenario invalid: the message names the file, the key and the fix",
    75: "another drill is running on this data directory (erpctl drill abort stops it)",
    76: "the drill ran and failed: its recovery failed or an objective was missed (its record says which)",
    77: "no backup to restore the drill's sandbox from (erpctl backup create, or --fresh)",
    78: "live drill refused: it needs approvals (erpctl drill approve), a window, and no destructive fault",
    110: "ERP login: the password is right, a one-time code must follow (the API's challenge)",
    111: "ERP login: the user's role requires multi-factor login and the user has not set it up (web pages)",
    112: "erpctl pitr: pgBackRest or PostgreSQL failed (the message carries what it said)",
    113: "erpctl pitr: not set up ('erpctl pitr setup'), or PostgreSQL does not archive WAL to pgBackRest "
         "(archive_mode, archive_command: the message gives the lines to set)",
    114: "erpctl pitr restore: the target is not a time or transaction id, is before the first backup, or past "
         "the last archived WAL; nothing was restored",
    115: "erpctl pitr restore/verify: the restored cluster failed the verification ladder; it was removed, the "
         "live cluster untouched",
    116: "erpctl fleet failover refused: the old primary still answers (--force fences it first); nothing promoted",
    117: "erpctl fleet failover: the standby could not be promoted (not a standby, unreachable, still in recovery)",
    118: "erpctl pitr: pgBackRest's repository cannot be read or written",
    120: "a stored encrypted value does not decrypt where it is (moved to another row or column, altered, or "
         "another key); the message names table, column and row",
    121: "erpctl field-key rewrap: refused while release 1.0 may still run on the database (before the contract "
         "step)",
    122: "erpctl field-key reveal: no such audit log entry",
    123: "erpctl field-key reveal: the audit log entry holds no encrypted value",
    130: "interrupted",
}
