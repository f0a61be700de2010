"""Write-audit-publish's audit step: validate a batch against its table's pandera schema before commit."""

from __future__ import annotations

from dataclasses import dataclass, field

from lakehouse.tables.schemas import TableSchema


@dataclass(frozen=True)
class ValidationReport:
    table: str
    rows: int
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def raise_if_failed(self) -> None:
        if self.failures:
            raise BatchValidationError(self)


class BatchValidationError(Exception):
    def __init__(self, report: ValidationReport):
        self.report = report
        listed = "\n  ".join(report.failures[:20])
        super().__init__(f"{report.table}: batch of {report.rows} rows fails its schema, nothing was committed:\n  {listed}")


def validate_spark(schema: TableSchema, df) -> ValidationReport:
    """Validate a Spark DataFrame (pandera's pyspark backend collects errors instead of raising)."""
    validated = schema.pandera_pyspark().validate(check_obj=df)
    failures = [
        f"{kind.lower()} {check_type.lower()}: {e.get('column') or e.get('schema')}: {e.get('check')}: {e.get('error')}"
        for kind, by_type in dict(validated.pandera.errors).items()
        for check_type, errors in by_type.items()
        for e in errors
    ]
    return ValidationReport(schema.name, df.count(), failures)


def validate_arrow(schema: TableSchema, table) -> ValidationReport:
    """Validate an Arrow table with pandera's polars backend (zero-copy; nothing goes through pandas)."""
    import pandera.errors  # here: seconds to import, and only validation needs it
    import polars as pl

    frame = pl.from_arrow(table)
    try:
        schema.pandera_polars().validate(frame, lazy=True)
        failures: list[str] = []
    except pandera.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        failures = [
            f"{row['column']}: {row['check']}: {row['failure_case']!r}"
            for row in cases.unique(subset=["column", "check"], keep="first", maintain_order=True).iter_rows(named=True)
        ]
    return ValidationReport(schema.name, frame.height, failures)
