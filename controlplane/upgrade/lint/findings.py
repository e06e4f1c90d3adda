"""What the linter reports: one Finding per problem, the migrations it read, and the report."""

from __future__ import annotations

from dataclasses import asdict, dataclass

DEFAULT_LARGE_ROWS = 100_000
ERROR, WARNING = "error", "warning"


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    revision: str | None
    rule: str
    severity: str  # "error" | "warning"
    message: str
    fix: str

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.severity} [{self.rule}] {self.message}"


@dataclass(frozen=True)
class Migration:
    path: str
    revision: str | None
    down_revisions: tuple[str, ...]
    stage: str | None
    doc: str | None


@dataclass(frozen=True)
class LintReport:
    versions_dir: str
    migrations: tuple[Migration, ...]
    findings: tuple[Finding, ...]
    large_rows: int

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    def as_dict(self) -> dict:
        return {"versions_dir": self.versions_dir, "large_rows": self.large_rows,
                "migrations": [asdict(m) for m in self.migrations],
                "errors": len(self.errors), "warnings": len(self.warnings),
                "findings": [f.as_dict() for f in self.findings]}

