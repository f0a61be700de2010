import json
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta

from lakehouse.generator import EVENT_NAMES, PLATFORMS, GeneratorConfig, day_folder, generate

START = date(2026, 3, 1)
CONFIG = GeneratorConfig(users=150, seed=11, duplicate_rate=0.05)


def _lines(landing, day):
    return (day_folder(landing, day) / "events.jsonl").read_text().splitlines()


def test_same_seed_gives_same_bytes_whether_landed_at_once_or_day_by_day(tmp_path):
    generate(tmp_path / "a", START, 3, CONFIG)
    for offset in range(3):
        generate(tmp_path / "b", START + timedelta(days=offset), 1, CONFIG)
    for offset in range(3):
        day = START + timedelta(days=offset)
        assert _lines(tmp_path / "a", day) == _lines(tmp_path / "b", day)
    assert _lines(tmp_path / "a", START) != _lines(tmp_path / "a", START + timedelta(days=1))


def test_another_seed_gives_other_events(tmp_path):
    generate(tmp_path / "a", START, 1, CONFIG)
    generate(tmp_path / "b", START, 1, GeneratorConfig(users=150, seed=12, duplicate_rate=0.05))
    assert _lines(tmp_path / "a", START) != _lines(tmp_path / "b", START)


def test_events_have_the_seed_shape_and_stay_in_their_day(tmp_path):
    manifest = generate(tmp_path, START, 2, CONFIG)
    for offset in range(2):
        day = START + timedelta(days=offset)
        lines = _lines(tmp_path, day)
        assert manifest["days"][day.isoformat()]["lines"] == len(lines)
        for line in lines:
            event = json.loads(line)
            assert set(event) == {"event_id", "event_name", "timestamp", "user_id", "session_id", "platform", "properties"}
            assert event["event_name"] in EVENT_NAMES and event["platform"] in PLATFORMS
            ts = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
            assert ts.date() == day and event["timestamp"].endswith("Z")
            if event["event_name"] == "cart_item_added":
                props = event["properties"]
                assert props["price_usd"] > 0 and props["quantity"] >= 1 and props["experiment_variant"] in ("A", "B")


def test_duplicates_are_exact_redeliveries_at_about_the_configured_rate(tmp_path):
    manifest = generate(tmp_path, START, 3, CONFIG)
    lines = [line for offset in range(3) for line in _lines(tmp_path, START + timedelta(days=offset))]
    by_id = defaultdict(set)
    for line in lines:
        by_id[json.loads(line)["event_id"]].add(line)
    assert all(len(variants) == 1 for variants in by_id.values()), "a redelivery must repeat the line exactly"
    events = sum(d["events"] for d in manifest["days"].values())
    assert len(by_id) == events
    duplicates = len(lines) - events
    assert 0.02 * events < duplicates < 0.09 * events


def test_purchases_follow_cart_adds_in_the_same_session(tmp_path):
    generate(tmp_path, START, 3, CONFIG)
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
            assert len({e["user_id"] for e in events}) == 1
    assert purchases > 10
