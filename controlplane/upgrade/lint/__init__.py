"""Refuse dangerous Alembic migrations before they run (`erpctl upgrade lint`).

A staged upgrade (expand -> batched backfill -> contract) keeps the ERP serving only when every
migration keeps to its stage. This linter reads each file of a versions directory with `ast` -- it
never imports or runs a migration -- and reports one Finding per problem: file, line, rule, what is
wrong and how to fix it.

Rules (Finding.rule):

  full-table-update     UPDATE, DELETE, TRUNCATE, MERGE or INSERT ... SELECT (SQL text given to any
                        `.execute()`, or a SQLAlchemy update()/delete()/from_select() construct) whose
                        WHERE does not bound the table's primary key by a range (or to given keys).
                        `# lint: allow-full-update <reason>` on the statement allows one (a small
                        fixed table); with row estimates, a marked table above the threshold is still
                        an error.
  volatile-default      add_column (or ALTER TABLE ... ADD COLUMN) with a non-constant server
                        default, an identity or a stored generated column.
  column-type-change    alter_column(type_=...) or ALTER COLUMN ... TYPE.
  table-rebuild         batch_alter_table(recreate="always"), or a batch SQLite can only run by
                        copying the table (anything but add_column, create_index, drop_index).
                        These three are errors on a table above the row threshold, warnings when its
                        size is unknown, and not reported for smaller tables or tables the same
                        migration creates.
  stage-declaration     module-level `stage` missing, or not one of expand, backfill, contract.
  ddl-in-backfill       DDL in a stage = "backfill" migration.
  data-in-schema-stage  a data change (a key-bounded one, or a backfill run or declaration) in an
                        expand or contract migration (unbounded ones are full-table-update anywhere;
                        the allow-full-update marker allows a small fixed table in any stage).
  stage-order           a contract that drops or alters a column or table which a backfill reads or
                        writes, while that backfill does not come before it in the revision chain.
  revision-chain        no revision id, a duplicate id, an unknown down_revision, several heads.
  syntax                the file is not valid Python.
  dynamic-sql           (warning) SQL, or a WHERE, built at runtime that the linter cannot read.

SQL is read from string constants, names assigned in the same function or module, concatenation,
`%`/`.format()` and f-strings; an interpolated value the linter cannot resolve stands for "some
value", which is enough to see the statement's shape (`WHERE id BETWEEN {lo} AND {hi}`).

The package, by seam:

    report.py          lint_report / lint_migrations: read every file, run the rules, one report
    findings.py        Finding, Migration, LintReport, the severities
    migration.py       one migration file: parsed once, its header and the tables it creates
    pyeval.py          the Python evaluator: names, scopes and the texts a string expression can have
    sql_tokens.py      the SQL tokenizer and statement splitting
    sql_statements.py  what one SQL statement does (kind, table, WHERE, rewrites, drops)
    sql_bounds.py      whether a WHERE bounds the key by a range
    constructs.py      SQLAlchemy statements built in Python, and their where() bounds
    data_rules.py      full-table-update, data-in-schema-stage, dynamic-sql
    schema_rules.py    volatile-default, column-type-change, table-rebuild, ddl-in-backfill,
                       stage-declaration
    chain.py           revision-chain, stage-order (across migrations)
    estimates.py       row estimates of a live database (SQLite, PostgreSQL)
"""

from .data_rules import ALLOW_MARKER, FIX_BACKFILL
from .estimates import row_estimates
from .findings import DEFAULT_LARGE_ROWS, ERROR, WARNING, Finding, LintReport, Migration
from .report import lint_migrations, lint_report

__all__ = ["ALLOW_MARKER", "DEFAULT_LARGE_ROWS", "ERROR", "FIX_BACKFILL", "WARNING", "Finding", "LintReport",
           "Migration", "lint_migrations", "lint_report", "row_estimates"]
