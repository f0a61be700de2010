from datetime import date, timedelta

from lakehouse.tables.quality import volume_drops

D = [date(2026, 3, 1) + timedelta(days=i) for i in range(12)]


def test_a_day_at_half_the_trailing_mean_or_less_is_a_drop():
    history = {d: 1000 for d in D[:7]}
    assert volume_drops(history, {D[7]: 501}) == []
    assert volume_drops(history, {D[7]: 500}) == [
        "2026-03-08: 500 rows, 50% of the trailing 7-day mean 1000"
    ]
    assert volume_drops(history, {D[7]: 0}) == [
        "2026-03-08: 0 rows, 0% of the trailing 7-day mean 1000"
    ]


def test_batch_days_are_the_baseline_for_later_batch_days():
    # A backfill: the table is empty, the batch brings its own history.
    batch = {d: 2000 for d in D[:8]} | {D[8]: 900}
    assert volume_drops({}, batch) == ["2026-03-09: 900 rows, 45% of the trailing 7-day mean 2000"]
    # The batch replaces what the table held for the same days.
    assert volume_drops({d: 10_000 for d in D[:8]}, batch) == [
        "2026-03-09: 900 rows, 45% of the trailing 7-day mean 2000"
    ]


def test_no_baseline_or_a_small_one_is_not_judged():
    assert volume_drops({D[0]: 1000, D[1]: 1000}, {D[2]: 0}) == []  # two trailing days only
    assert volume_drops({d: 400 for d in D[:7]}, {D[7]: 10}) == []  # trailing mean under 500 rows
