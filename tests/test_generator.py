import json
import math
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import date, datetime, timedelta

import pytest

from lakehouse.events.generator import MALFORMED_KINDS, GeneratorConfig, generate
from lakehouse.events.vocabulary import EVENT_NAMES, PLATFORMS, day_folder

START = date(2026, 3, 1)
CLEAN = GeneratorConfig(
    users=150,
    seed=11,
    duplicate_rate=0,
    clock_skew_rate=0,
    late_rate=0,
    missing_field_rate=0,
    anonymous_rate=0,
    malformed_rate=0,
    bom_rate=0,
    drift_from=None,
)


def _lines(landing, day):
    return (day_folder(landing, day) / "events.jsonl").read_text(encoding="utf-8").splitlines()


def _ts(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_same_settings_give_same_bytes_whether_landed_at_once_or_day_by_day(tmp_path):
    config = GeneratorConfig(
        users=150, seed=11, drift_from="2026-03-03"
    )  # the default drift day is the first window's middle
    generate(tmp_path / "a", START, 4, config)
    for offset in range(4):
        generate(tmp_path / "b", START + timedelta(days=offset), 1, config)
    for offset in range(4):
        day = START + timedelta(days=offset)
        assert (day_folder(tmp_path / "a", day) / "events.jsonl").read_bytes() == (
            day_folder(tmp_path / "b", day) / "events.jsonl"
        ).read_bytes()
    assert _lines(tmp_path / "a", START) != _lines(tmp_path / "a", START + timedelta(days=1))


def _price_fields_by_day(landing, start, days):
    """Per landed day, the price fields of its cart adds (each lands on the day it happened when nothing
    is late or skewed)."""
    return {
        (start + timedelta(days=offset)).isoformat(): {
            "price" if "price" in event["properties"] else "price_usd"
            for event in map(json.loads, _lines(landing, start + timedelta(days=offset)))
            if event["event_name"] == "cart_item_added"
        }
        for offset in range(days)
    }


def test_the_schema_drift_starts_in_the_middle_of_the_first_window_landed_and_keeps_its_day(
    tmp_path,
):
    """Whatever the dates, a landed window shows both price schemas: here days 1-3 of 6 have price_usd,
    days 4-6 price and currency."""
    config = replace(CLEAN, drift_from=GeneratorConfig().drift_from)
    start = date(2031, 5, 1)  # any window: the default drift day moves with it
    manifest = generate(tmp_path, start, 6, config)
    assert manifest["generator"]["drift_from"] == "2031-05-04"
    assert _price_fields_by_day(tmp_path, start, 6) == {
        "2031-05-01": {"price_usd"},
        "2031-05-02": {"price_usd"},
        "2031-05-03": {"price_usd"},
        "2031-05-04": {"price"},
        "2031-05-05": {"price"},
        "2031-05-06": {"price"},
    }
    # Days landed later in the folder (a demo run again a day later) keep the folder's drift day, and its bytes.
    before = (day_folder(tmp_path, start) / "events.jsonl").read_bytes()
    manifest = generate(tmp_path, start + timedelta(days=1), 8, config)
    assert manifest["generator"]["drift_from"] == "2031-05-04"
    assert _price_fields_by_day(tmp_path, start, 3) == {
        "2031-05-01": {"price_usd"},
        "2031-05-02": {"price_usd"},
        "2031-05-03": {"price_usd"},
    }
    assert (day_folder(tmp_path, start) / "events.jsonl").read_bytes() == before


def test_a_folder_landed_with_the_earlier_fixed_drift_day_keeps_it(tmp_path):
    """Earlier versions' default was 2026-11-10, recorded in the folder's manifest: landing more days
    there goes on with it."""
    earlier = replace(CLEAN, drift_from="2026-11-10")
    generate(tmp_path, date(2026, 11, 8), 2, earlier)
    manifest = generate(
        tmp_path, date(2026, 11, 10), 2, replace(CLEAN, drift_from=GeneratorConfig().drift_from)
    )
    assert manifest["generator"]["drift_from"] == "2026-11-10"
    assert _price_fields_by_day(tmp_path, date(2026, 11, 8), 4) == {
        "2026-11-08": {"price_usd"},
        "2026-11-09": {"price_usd"},
        "2026-11-10": {"price"},
        "2026-11-11": {"price"},
    }


def test_landing_again_with_other_settings_is_refused(tmp_path):
    generate(tmp_path, START, 1, CLEAN)
    with pytest.raises(ValueError, match="other generator settings"):
        generate(tmp_path, START, 1, replace(CLEAN, seed=12))


def test_clean_events_have_the_seed_shape_and_land_on_the_day_received(tmp_path):
    manifest = generate(tmp_path, START, 2, CLEAN)
    for offset in range(2):
        day = START + timedelta(days=offset)
        lines = _lines(tmp_path, day)
        assert manifest["days"][day.isoformat()]["lines"] == len(lines)
        for line in lines:
            event = json.loads(line)
            assert set(event) == {
                "event_id",
                "event_name",
                "timestamp",
                "sent_at",
                "received_at",
                "user_id",
                "anonymous_id",
                "session_id",
                "platform",
                "properties",
            }
            assert (
                event["event_name"] in EVENT_NAMES
                and event["platform"] in PLATFORMS
                and event["user_id"].startswith("usr_")
            )
            assert _ts(event["received_at"]).date() == day
            assert (
                timedelta(0)
                <= _ts(event["received_at"]) - _ts(event["timestamp"])
                < timedelta(seconds=5)
            )
            if event["event_name"] == "cart_item_added":
                props = event["properties"]
                assert (
                    props["price_usd"] > 0
                    and props["quantity"] >= 1
                    and props["experiment_variant"] in ("A", "B")
                )


# What makes a landed line malformed, restated from the generator's MALFORMED_KINDS with the standard
# library only: the test judges the landed bytes itself instead of reading the generator's own counts.
REQUIRED_FIELDS = {
    "event_id",
    "event_name",
    "timestamp",
    "sent_at",
    "received_at",
    "user_id",
    "anonymous_id",
    "properties",
}


def _malformed_kind(line: str) -> str | None:
    """The kind of corruption a landed line shows, or None for a well-formed event line."""
    if line == "":
        return "empty_line"
    try:
        event = json.loads(line)
    except ValueError:
        return "broken_json"
    if (
        not isinstance(event, dict)
        or not REQUIRED_FIELDS <= set(event)
        or not isinstance(event["properties"], dict)
    ):
        return "missing_required_field"  # no kind of the generator produces it: must stay 0
    if not all(isinstance(event[k], str) for k in ("timestamp", "sent_at", "received_at")):
        return "wrong_type"
    if event["event_name"] not in EVENT_NAMES:
        return "unknown_event_name"
    if any(
        isinstance(event["properties"].get(k), (int, float)) and event["properties"][k] < 0
        for k in ("price_usd", "price")
    ):
        return "negative_price"
    return None


def _within(observed: int, expected: float, variance: float, sds: float = 4.0) -> bool:
    return abs(observed - expected) <= sds * math.sqrt(variance)


def test_each_problem_appears_at_about_its_rate(tmp_path):
    duplicate_rate, malformed_rate = 0.05, 0.02
    config = replace(
        CLEAN,
        users=600,
        duplicate_rate=duplicate_rate,
        clock_skew_rate=0.2,
        late_rate=0.1,
        anonymous_rate=0.3,
        malformed_rate=malformed_rate,
        bom_rate=1.0,
        drift_from="2026-03-03",
    )
    generate(tmp_path, START, 5, config)
    lines_total = malformed = duplicates = first_deliveries = 0
    kinds = Counter()
    skewed = late = anonymous = drifted = 0
    for offset in range(5):
        day = START + timedelta(days=offset)
        text = (day_folder(tmp_path, day) / "events.jsonl").read_text(encoding="utf-8")
        assert text.startswith("\ufeff")
        # Lines end with "\n" (not str.splitlines, which would also split inside a line on U+2028 and the like).
        *lines, tail = text.removeprefix("\ufeff").split("\n")
        assert tail == ""
        seen: set[str] = set()  # a retry is delivered within the same day's file
        for line in lines:
            lines_total += 1
            kind = _malformed_kind(line)
            if kind:
                malformed += 1
                kinds[kind] += 1
            event = json.loads(line) if kind not in ("empty_line", "broken_json") else None
            if event is not None:
                if event["event_id"] in seen:
                    duplicates += 1
                else:
                    seen.add(event["event_id"])
                    first_deliveries += 1
            if kind:
                continue
            ts, sent, received = (_ts(event[k]) for k in ("timestamp", "sent_at", "received_at"))
            skewed += abs(sent - received) > timedelta(
                minutes=1
            )  # the device clock's offset, give or take the network
            late += sent - ts > timedelta(hours=1)  # held back on the device before sending
            anonymous += event["user_id"] is None
            if "price" in event["properties"]:
                drifted += 1
                assert (received - (sent - ts)).date() >= date(2026, 3, 3)
    assert (
        lines_total > 5000
    )  # enough lines that a rate off by a factor of 2 lies >= 5 standard deviations out

    # Duplicates: every first delivery of a line is delivered again with probability duplicate_rate, once
    # at most, so the repeated event ids are Binomial(first deliveries, duplicate_rate). The bound is 4
    # standard deviations: the seed is fixed, but any seed passes with probability > 0.9999, and a rate
    # half or twice the configured one lies more than 8 standard deviations away here.
    p = duplicate_rate
    assert _within(duplicates, first_deliveries * p, first_deliveries * p * (1 - p)), (
        duplicates,
        first_deliveries,
    )

    # Malformed: every event is corrupted with probability malformed_rate, independently of whether its
    # line is then delivered twice (a retry repeats the corrupted line). So each landed line is malformed
    # with probability m, but a line and its retry go together: with n = lines / (1 + d) events, the
    # count is a sum of n independent X(1 + Y), X ~ Bernoulli(m), Y ~ Bernoulli(d), of mean m(1 + d) and
    # variance m(1 + 3d) - m^2 (1 + d)^2 each. Same 4 standard deviations (a halved or doubled rate is
    # 5 or more away).
    m, d = malformed_rate, duplicate_rate
    events = lines_total / (1 + d)
    assert _within(malformed, m * lines_total, events * (m * (1 + 3 * d) - (m * (1 + d)) ** 2)), (
        malformed,
        lines_total,
    )
    # Every kind the generator produces is there (about 1/5 of ~125 each), and nothing else is malformed.
    assert set(kinds) == set(MALFORMED_KINDS), kinds
    assert skewed > 0 and late > 0 and anonymous > 0 and drifted > 0


def test_the_malformed_line_rule_of_this_test_knows_every_kind(tmp_path):
    """_malformed_kind must not be a rule that passes anything: a well-formed line is None, each corruption its kind."""
    import numpy as np

    from lakehouse.events.generator import _corrupt  # noqa: PLC2415 (the corruption itself, to check the rule above)

    generate(tmp_path, START, 1, replace(CLEAN, drift_from="2026-03-01"))
    rng = np.random.default_rng(0)
    seen = Counter()
    for line in _lines(tmp_path, START)[:200]:
        assert _malformed_kind(line) is None
        kind, corrupted = _corrupt(rng, json.loads(line))
        assert _malformed_kind(corrupted) == kind, corrupted
        seen[kind] += 1
    assert set(seen) == set(MALFORMED_KINDS)


def test_purchases_follow_cart_adds_of_a_logged_in_session(tmp_path):
    generate(tmp_path, START, 3, replace(CLEAN, anonymous_rate=0.3))
    sessions = defaultdict(list)
    for offset in range(3):
        for line in _lines(tmp_path, START + timedelta(days=offset)):
            event = json.loads(line)
            sessions[event["session_id"]].append(event)
    purchases = 0
    for events in sessions.values():
        names = Counter(e["event_name"] for e in events)
        if names["purchase_completed"]:
            purchases += 1
            assert names["cart_item_added"] >= 1
            assert all(e["user_id"] for e in events if e["event_name"] == "purchase_completed")
        assert len({e["anonymous_id"] for e in events}) == 1
    assert purchases > 10
