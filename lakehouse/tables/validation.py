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
        super().__init__(
            f"{report.table}: batch of {report.rows} rows fails its schema, nothing was committed:\n  {listed}"
        )


# pandera's pyspark checks, as the condition each value must meet; a null meets them all, as in pandera.
_CONDITIONS = {
    "greater_than_or_equal_to": lambda c, s: c >= s["min_value"],
    "greater_than": lambda c, s: c > s["min_value"],
    "less_than_or_equal_to": lambda c, s: c <= s["max_value"],
    "less_than": lambda c, s: c < s["max_value"],
    "in_range": lambda c, s: (
        (c >= s["min_value"] if s.get("include_min", True) else c > s["min_value"])
        & (c <= s["max_value"] if s.get("include_max", True) else c < s["max_value"])
    ),
    "isin": lambda c, s: c.isin(list(s["allowed_values"])),
    "notin": lambda c, s: ~c.isin(list(s["forbidden_values"])),
    "equal_to": lambda c, s: c == s["value"],
    "not_equal_to": lambda c, s: c != s["value"],
}


def validate_spark(schema: TableSchema, df) -> ValidationReport:
    """Validate a Spark DataFrame against its table's pandera schema, in one pass over the data.

    pandera's pyspark backend runs one Spark job per rule: some 50 for cleaned_events, 10-15 s of a
    run. Here pandera checks the columns, their types and strictness on the frame's schema alone (no
    job), and one aggregate counts the rows that break each data rule of the same pandera schema
    (`broken_rules`). Whenever that finds anything, or meets a check it cannot translate, pandera
    runs every rule its own way, and the report is pandera's and then the counts.
    """
    import pandera.config
    from pyspark.sql import types as T

    pandera_schema = schema.pandera_pyspark()
    # No rows, and every column declared non-null, so that pandera looks for no null either: the aggregate counts them.
    structure = df.sparkSession.createDataFrame(
        [], T.StructType([T.StructField(f.name, f.dataType, False) for f in df.schema])
    )
    with pandera.config.config_context(validation_depth=pandera.config.ValidationDepth.SCHEMA_ONLY):
        misshapen = bool(_pandera_failures(pandera_schema, structure))
    counts = None if misshapen else broken_rules(pandera_schema, df)
    if counts is None:
        return ValidationReport(schema.name, df.count(), _pandera_failures(pandera_schema, df))
    rows = counts.pop("rows")
    broken = [f"{rule}: {n} rows" for rule, n in counts.items() if n]
    if not broken:
        return ValidationReport(schema.name, rows)
    # pandera's own report, then the count of rows breaking each rule (which stand even if pandera disagreed).
    return ValidationReport(schema.name, rows, _pandera_failures(pandera_schema, df) + broken)


def broken_rules(pandera_schema, df) -> dict[str, int] | None:
    """Rows of `df` ("rows"), and the rows breaking each data rule of a pandera pyspark schema, from
    one aggregate; None if a check has no translation here."""
    from pyspark.sql import functions as F

    rules = {"rows": F.count(F.lit(1))}
    for name, column in pandera_schema.columns.items():
        value = F.col(name)
        if not column.nullable:
            rules[f"column {name}: not_nullable"] = F.count(F.when(value.isNull(), 1))
        for check in column.checks:
            if check.name not in _CONDITIONS:
                return None
            rules[f"column {name}: {check.error}"] = F.count(
                F.when(~_CONDITIONS[check.name](value, check.statistics), 1)
            )
    if pandera_schema.unique:
        unique = (
            [pandera_schema.unique]
            if isinstance(pandera_schema.unique, str)
            else list(pandera_schema.unique)
        )
        rules[f"unique {unique}: duplicates"] = F.count(F.lit(1)) - F.count_distinct(
            F.struct(*unique)
        )
    found = df.agg(*[rule.alias(str(i)) for i, rule in enumerate(rules.values())]).first()
    return dict(zip(rules, found))


def _pandera_failures(pandera_schema, df) -> list[str]:
    """Every failure pandera's pyspark backend finds (it collects them instead of raising)."""
    validated = pandera_schema.validate(check_obj=df)
    return [
        f"{kind.lower()} {check_type.lower()}: {e.get('column') or e.get('schema')}: {e.get('check')}: {e.get('error')}"
        for kind, by_type in dict(validated.pandera.errors).items()
        for check_type, errors in by_type.items()
        for e in errors
    ]


def validate_arrow(schema: TableSchema, table) -> ValidationReport:
    """Validate an Arrow table with pandera's polars backend (zero-copy; nothing goes through pandas)."""
    import pandera.errors  # here: seconds to import, and only validation needs it
    import polars as pl

    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)  # a Table converts to a DataFrame, never a Series
    try:
        schema.pandera_polars().validate(frame, lazy=True)
        failures: list[str] = []
    except pandera.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        failures = [
            f"{row['column']}: {row['check']}: {row['failure_case']!r}"
            for row in cases.unique(
                subset=["column", "check"], keep="first", maintain_order=True
            ).iter_rows(named=True)
        ]
    return ValidationReport(schema.name, frame.height, failures)
