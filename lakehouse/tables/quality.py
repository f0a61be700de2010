"""Batch-level data-quality rules: checks on a whole batch that decide whether it may be committed."""

from __future__ import annotations

from datetime import date, timedelta


def volume_drops(
    history: dict[date, int],
    batch: dict[date, int],
    threshold: float = 0.5,
    window_days: int = 7,
    min_days: int = 3,
    min_mean_rows: float = 500,
) -> list[str]:
    """Days of the batch whose row count fell to `threshold` or less of the mean of the `window_days` before them.

    The trailing days are taken from the batch where it covers them, else from the table's history.
    A day is not judged with fewer than `min_days` trailing days known (a new table has no baseline)
    or a trailing mean under `min_mean_rows` (small volumes swing by half on ordinary days).
    """
    known = history | batch
    failures = []
    for day in sorted(batch):
        trailing = [
            known[d]
            for d in (day - timedelta(days=i) for i in range(1, window_days + 1))
            if d in known
        ]
        if len(trailing) < min_days:
            continue
        mean = sum(trailing) / len(trailing)
        if mean >= min_mean_rows and batch[day] <= threshold * mean:
            failures.append(
                f"{day}: {batch[day]} rows, {batch[day] / mean:.0%} of the trailing {len(trailing)}-day mean {mean:.0f}"
            )
    return failures


def unbalanced_days(
    days: list[date],
    attributed: dict[date, int],
    cleaned: dict[date, int],
    quarantined: dict[date, int],
) -> list[str]:
    """Days of the batch whose raw rows attributed to them are not exactly the rows cleaned + quarantined for them."""
    gaps = []
    for day in days:
        kept = cleaned.get(day, 0) + quarantined.get(day, 0)
        if kept != attributed.get(day, 0):
            gaps.append(
                f"{day}: {attributed.get(day, 0)} raw rows attributed, {kept} in cleaned + quarantine"
            )
    return gaps
