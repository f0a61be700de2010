import json
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import date, datetime, timedelta

import pytest

from lakehouse.events.generator import MALFORMED_KINDS, GeneratorConfig, generate
from lakehouse.events.vocabulary import EVENT_NAMES, PLATFORMS, day_folder

START = date(2026, 3, 1)
CLEAN = GeneratorConfig(
    users=150, seed=11, duplicate_rate=0, clock_skew_rate=0, late_rate=0, missing_field_rate=0,
    anonymous_rate=0, malformed_rate=0, bom_rate=0, drift_from=None,
)


def _lines(landing, day):
    return (day_folder(landing, day) / "events.jsonl").read_text(encoding="utf-8").splitlines()


def _ts(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_same_settings_give_same_bytes_whether_landed_at_once_or_day_by_day(tmp_path):
    config = GeneratorConfig(users=150, seed=11)
    generate(tmp_path / "a", START, 4, config)
    for offset in range(4):
        generate(tmp_path / "b", START + timedelta(days=offset), 1, config)
    for offset in range(4):
        day = START + timedelta(days=offset)
        assert (day_folder(tmp_path / "a", day) / "events.jsonl").read_bytes() == (day_folder(tmp_path / "b", day) / "events.jsonl").read_bytes()
    assert _lines(tmp_path / "a", START) != _lines(tmp_path / "a", START + timedelta(days=1))


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
            assert set(event) == {"event_id", "event_name", "timestamp", "sent_at", "received_at", "user_id", "anonymous_id", "session_id", "platform", "properties"}
            assert event["event_name"] in EVENT_NAMES and event["platform"] in PLATFORMS and event["user_id"].startswith("usr_")
            assert _ts(event["received_at"]).date() == day
            assert timedelta(0) <= _ts(event["received_at"]) - _ts(event["timestamp"]) < timedelta(seconds=5)
            if event["event_name"] == "cart_item_added":
                props = event["properties"]
                assert props["price_usd"] > 0 and props["quantity"] >= 1 and props["experiment_variant"] in ("A", "B")


def test_each_problem_appears_at_about_its_rate(tmp_path):
    config = replace(CLEAN, duplicate_rate=0.05, clock_skew_rate=0.2, late_rate=0.1, anonymous_rate=0.3, malformed_rate=0.02, bom_rate=1.0, drift_from="2026-03-03")
    manifest = generate(tmp_path, START, 5, config)
    stats = Counter()
    for day_stats in manifest["days"].values():
        stats.update({k: v for k, v in day_stats.items() if k != "bom"})
    assert 0.03 < stats["duplicates"] / stats["events"] < 0.07
    assert 0.01 < sum(stats[k] for k in MALFORMED_KINDS) / stats["events"] < 0.03
    skewed = late = anonymous = drifted = 0
    for offset in range(5):
        day = START + timedelta(days=offset)
        text = (day_folder(tmp_path, day) / "events.jsonl").read_text(encoding="utf-8")
        assert text.startswith("\ufeff")
        for line in text.lstrip("\ufeff").splitlines():
            try:
                event = json.loads(line)
                ts, sent, received = (_ts(event[k]) for k in ("timestamp", "sent_at", "received_at"))
            except (ValueError, TypeError, AttributeError, KeyError):
                continue
            skewed += abs(sent - received) > timedelta(minutes=1)  # the device clock's offset, give or take the network
            late += sent - ts > timedelta(hours=1)  # held back on the device before sending
            anonymous += event["user_id"] is None
            if "price" in event["properties"]:
                drifted += 1
                assert (received - (sent - ts)).date() >= date(2026, 3, 3)
    assert skewed > 0 and late > 0 and anonymous > 0 and drifted > 0


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
