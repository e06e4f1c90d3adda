"""Point-in-time recovery of a PostgreSQL cluster with pgBackRest, and failover to a streaming standby.

    config.py     what 'erpctl pitr setup' records: the cluster and pgBackRest's stanza and directory
    cluster.py    a local PostgreSQL cluster: its binaries run as its owner, SQL, start/stop, waits
    pgbackrest.py pgBackRest driven by erpctl: its configuration, setup checks, backups, info, targets
    restore.py    restore to a time, before a transaction or to the end of the archive; the ladder on it
    failover.py   replication lag measured, the standby promoted, the old primary fenced, app hosts repointed
"""
