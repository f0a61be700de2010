"""Synthetic app events, shaped like the seed's `cart_item_added`, landed as JSONL files.

Every user has a fixed platform, experiment variant, catalogue taste and purchase propensity, and an
activity level that rises and falls in a slow cycle. A session is a run of product views, some of
which become cart adds, and a cart turns into a purchase with the user's propensity. Recent activity
and past purchases therefore predict purchases in the following week, which is what the model learns.

The stream carries the data problems real event pipelines see, each with a configurable rate
(all on by default, recorded in the landing manifest):
- duplicates: a delivered line is delivered again (client retry);
- clock skew: a session's device clock is off by minutes to days; every event carries the device's
  `timestamp` and `sent_at` and the server's `received_at` (true time);
- late arrival: an offline session is sent 1 to 71 hours after it started and lands in that day's folder;
- schema drift: from `drift_from` on, `price_usd` becomes `price` in cents plus `currency` (by default
  from the middle day of the first window landed in the folder, so that any window shows the change);
- missing fields: platform, session_id, item_category or experiment_variant is left out;
- anonymous sessions: events before a login carry only the device's `anonymous_id`;
- malformed lines: broken JSON, wrong types, unknown event names, negative prices, empty lines, and
  a UTF-8 byte-order mark at the start of some files.

A landing folder is the UTC day the server received the lines. Output is a pure function of (seed,
users, rates, drift day, day): each day's events come from their own random stream, so landing 30 days
at once or day by day gives the same bytes, and re-landing a day is idempotent. The manifest keeps the
drift day a folder's first window settled, and later windows landed there keep it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from lakehouse.events.vocabulary import CATEGORIES, MAX_LATENESS, PLATFORMS, VARIANTS, day_folder

PLATFORM_WEIGHTS = (0.4, 0.35, 0.25)
SOURCE_PAGES = ("home", "search_results", "category", "recommendations")
N_ITEMS = 2000
MANIFEST = "manifest.json"
MALFORMED_KINDS = (
    "broken_json",
    "wrong_type",
    "unknown_event_name",
    "negative_price",
    "empty_line",
)
# drift_from's default: the middle day of the first window landed in a folder. A fixed date would lie
# before every day of a window landed some weeks later, and the schema change would never be seen.
MID_WINDOW = "mid-window"


@dataclass(frozen=True)
class GeneratorConfig:
    users: int = 3000
    seed: int = 7
    duplicate_rate: float = 0.01  # share of lines delivered twice
    clock_skew_rate: float = 0.03  # share of sessions whose device clock is off
    late_rate: float = 0.02  # share of sessions sent 1 to 71 hours after they started
    missing_field_rate: float = 0.01  # share of events missing one optional field
    anonymous_rate: float = 0.1  # share of sessions that start logged out
    malformed_rate: float = 0.003  # share of lines corrupted (one of MALFORMED_KINDS)
    bom_rate: float = 0.2  # share of files that start with a UTF-8 byte-order mark
    drift_from: str | None = (
        MID_WINDOW  # first day (YYYY-MM-DD) with `price` (cents) + `currency`; None: never
    )


class _Population:
    """Per-user traits, drawn once from the seed."""

    def __init__(self, config: GeneratorConfig):
        rng = np.random.default_rng([config.seed, 0])
        n = config.users
        self.user_ids = [f"usr_{i:07d}" for i in range(n)]
        self.anonymous_ids = [f"anon_{rng.bytes(6).hex()}" for _ in range(n)]
        self.platform = rng.choice(len(PLATFORMS), size=n, p=PLATFORM_WEIGHTS)
        self.variant = rng.integers(0, len(VARIANTS), size=n)
        self.base_sessions_per_day = rng.gamma(shape=0.9, scale=0.35, size=n)
        # Variant B's checkout converts a little better: a real effect for the experiment metrics.
        self.purchase_propensity = np.clip(
            rng.beta(1.3, 6.0, size=n) * np.where(self.variant == 1, 1.15, 1.0), 0, 0.95
        )
        self.cycle_days = rng.uniform(10, 40, size=n)
        self.cycle_phase = rng.uniform(0, 2 * math.pi, size=n)
        self.favourite_category = rng.integers(0, len(CATEGORIES), size=n)
        item_rng = np.random.default_rng([config.seed, 1])
        self.item_category = item_rng.integers(0, len(CATEGORIES), size=N_ITEMS)
        self.item_price = np.round(item_rng.lognormal(mean=3.3, sigma=0.8, size=N_ITEMS), 2)
        self.items_by_category = [
            np.flatnonzero(self.item_category == c) for c in range(len(CATEGORIES))
        ]

    def sessions_per_day(self, day: date) -> np.ndarray:
        cycle = 0.5 + 0.5 * np.sin(
            2 * math.pi * day.toordinal() / self.cycle_days + self.cycle_phase
        )
        return self.base_sessions_per_day * (0.15 + 1.7 * cycle)


def _iso_millis(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


@dataclass
class _Wire:
    """One event as the server received it: `received` orders and places it, `body` is what was sent."""

    received: datetime
    body: dict


def _day_events(pop: _Population, config: GeneratorConfig, day: date) -> list[_Wire]:
    """Every event that happened on `day`, as delivered (with skewed device times and delivery delays)."""
    rng = np.random.default_rng([config.seed, 2, day.toordinal()])
    midnight = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    drifted = config.drift_from is not None and day >= date.fromisoformat(config.drift_from)
    sessions = rng.poisson(pop.sessions_per_day(day))
    wires: list[_Wire] = []

    for user in np.flatnonzero(sessions):
        variant = VARIANTS[pop.variant[user]]
        for _ in range(sessions[user]):
            session_id = f"ses_{rng.bytes(6).hex()}"
            skew = timedelta(0)
            if rng.random() < config.clock_skew_rate:
                skew = timedelta(
                    seconds=float(np.exp(rng.uniform(np.log(120), np.log(3 * 86400))))
                ) * (1 if rng.random() < 0.5 else -1)
            late_by = (
                timedelta(hours=float(rng.uniform(1, 71)))
                if rng.random() < config.late_rate
                else None
            )
            logged_in = rng.random() >= config.anonymous_rate
            login_after = int(rng.integers(1, 4)) if not logged_in and rng.random() < 0.6 else None
            # Each event carries whether the user was logged in when it was emitted (a login mid-session
            # changes it for the events after it).
            session: list[tuple[str, datetime, bool, dict]] = []

            ts = midnight + timedelta(seconds=float(rng.uniform(0, 86400 - 3600)))
            session.append(("session_started", ts, logged_in, {"experiment_variant": variant}))
            cart: list[tuple[float, int]] = []
            for view in range(1 + rng.poisson(3)):
                if login_after is not None and view == login_after:
                    ts += timedelta(seconds=float(rng.exponential(30)) + 1)
                    logged_in = True
                    session.append(("user_logged_in", ts, logged_in, {}))
                ts += timedelta(seconds=float(rng.exponential(45)) + 1)
                if rng.random() < 0.6:
                    candidates = pop.items_by_category[pop.favourite_category[user]]
                    item = int(candidates[rng.integers(0, len(candidates))])
                else:
                    item = int(rng.integers(0, N_ITEMS))
                price = float(pop.item_price[item])
                price_fields = (
                    {"price": int(round(price * 100)), "currency": "USD"}
                    if drifted
                    else {"price_usd": price}
                )
                common = {
                    "item_id": f"prod_{item:04d}",
                    "item_category": CATEGORIES[pop.item_category[item]],
                    **price_fields,
                    "source_page": SOURCE_PAGES[int(rng.integers(0, len(SOURCE_PAGES)))],
                    "experiment_variant": variant,
                }
                session.append(("product_viewed", ts, logged_in, common))
                if rng.random() < 0.25:
                    quantity = 1 + int(rng.poisson(0.3))
                    ts += timedelta(seconds=float(rng.exponential(20)) + 1)
                    session.append(
                        ("cart_item_added", ts, logged_in, {**common, "quantity": quantity})
                    )
                    cart.append((price, quantity))
            if cart and logged_in and rng.random() < pop.purchase_propensity[user] * 2.5:
                ts += timedelta(seconds=float(rng.exponential(60)) + 1)
                session.append(
                    (
                        "purchase_completed",
                        ts,
                        logged_in,
                        {
                            "order_id": f"ord_{rng.bytes(6).hex()}",
                            "revenue_usd": round(sum(p * q for p, q in cart), 2),
                            "item_count": sum(q for _, q in cart),
                            "experiment_variant": variant,
                        },
                    )
                )

            session_start, session_end = session[0][1], session[-1][1]
            for name, true_ts, known, properties in session:
                # A late session is sent 1 to 71 hours after it started (never before it ended): within MAX_LATENESS.
                sent = (
                    max(session_start + late_by, session_end)
                    if late_by
                    else true_ts + timedelta(seconds=float(rng.uniform(0, 2)))
                )
                received = sent + timedelta(seconds=float(rng.uniform(0.05, 1.5)))
                body = {
                    "event_id": f"evt_{rng.bytes(8).hex()}",
                    "event_name": name,
                    "timestamp": _iso_millis(true_ts + skew),
                    "sent_at": _iso_millis(sent + skew),
                    "received_at": _iso_millis(received),
                    "user_id": pop.user_ids[user] if known else None,
                    "anonymous_id": pop.anonymous_ids[user],
                    "session_id": session_id,
                    "platform": PLATFORMS[pop.platform[user]],
                    "properties": properties,
                }
                if rng.random() < config.missing_field_rate:
                    _drop_optional_field(rng, body)
                wires.append(_Wire(received, body))
    return wires


def _drop_optional_field(rng: np.random.Generator, body: dict) -> None:
    field = ("platform", "session_id", "item_category", "experiment_variant")[
        int(rng.integers(0, 4))
    ]
    target = body["properties"] if field in ("item_category", "experiment_variant") else body
    target.pop(field, None)


def _corrupt(rng: np.random.Generator, body: dict) -> tuple[str, str]:
    """A malformed rendering of an event line, and its kind."""
    kind = MALFORMED_KINDS[int(rng.integers(0, len(MALFORMED_KINDS)))]
    if kind == "empty_line":
        return kind, ""
    body = json.loads(json.dumps(body))
    if kind == "broken_json":
        line = json.dumps(body, separators=(",", ":"))
        return kind, line[: int(rng.integers(1, len(line) - 1))]
    if kind == "unknown_event_name":
        body["event_name"] = "screen_rendered"
    elif kind == "wrong_type":
        body["timestamp"] = 1700000000  # a number where an ISO string belongs
    elif kind == "negative_price":
        props = body["properties"]
        props["price_usd" if "price_usd" in props or "price" not in props else "price"] = -abs(
            props.get("price_usd", props.get("price", 10))
        )
    return kind, json.dumps(body, separators=(",", ":"))


def _land_day(
    rng: np.random.Generator, wires: list[_Wire], config: GeneratorConfig
) -> tuple[str, dict]:
    """The file content for one landing day, and what it holds."""
    wires = sorted(wires, key=lambda w: (w.received, w.body["event_id"]))
    stats = {"events": len(wires), "duplicates": 0} | dict.fromkeys(MALFORMED_KINDS, 0)
    lines: list[str] = []
    pending: list[tuple[int, str]] = []
    for i, wire in enumerate(wires):
        if rng.random() < config.malformed_rate:
            kind, line = _corrupt(rng, wire.body)
            stats[kind] += 1
        else:
            line = json.dumps(wire.body, separators=(",", ":"))
        lines.append(line)
        if rng.random() < config.duplicate_rate:
            pending.append((i + int(rng.integers(1, 20)), line))
            stats["duplicates"] += 1
        due = [p for p in pending if p[0] <= i]
        for p in due:
            lines.append(p[1])
            pending.remove(p)
    lines.extend(line for _, line in pending)
    stats["lines"] = len(lines)
    bom = "\ufeff" if rng.random() < config.bom_rate else ""
    stats["bom"] = bool(bom)
    return bom + "".join(line + "\n" for line in lines), stats


def generate(
    landing: Path, start: date, days: int, config: GeneratorConfig = GeneratorConfig()
) -> dict:
    """Land the lines received on `days` days from `start` under `landing`; returns the manifest."""
    pop = _Population(config)
    landing.mkdir(parents=True, exist_ok=True)
    manifest_path = landing / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"days": {}}
    config = _with_drift_day(config, start, days, manifest.get("generator"))
    if manifest.get("generator", asdict(config)) != asdict(config):
        raise ValueError(
            f"{landing} was landed with other generator settings {manifest['generator']}; use another folder"
        )
    manifest["generator"] = asdict(config)
    by_day: dict[date, list[_Wire]] = {}
    for offset in range(days):
        day = start + timedelta(days=offset)
        received: list[_Wire] = []
        # Lines received on `day` happened on it or up to MAX_LATENESS before.
        for back in range(MAX_LATENESS.days + 1):
            origin = day - timedelta(days=back)
            if origin not in by_day:
                by_day[origin] = _day_events(pop, config, origin)
            received.extend(w for w in by_day[origin] if w.received.date() == day)
        by_day.pop(day - MAX_LATENESS, None)
        text, stats = _land_day(
            np.random.default_rng([config.seed, 3, day.toordinal()]), received, config
        )
        folder = day_folder(landing, day)
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(folder / "events.jsonl", text)
        manifest["days"][day.isoformat()] = stats
    manifest["days"] = dict(sorted(manifest["days"].items()))
    _atomic_write(manifest_path, json.dumps(manifest, indent=2) + "\n")
    return manifest


def _with_drift_day(
    config: GeneratorConfig, start: date, days: int, landed_with: dict | None
) -> GeneratorConfig:
    """`config` with MID_WINDOW settled: the drift day the folder was landed with, else the window's middle day."""
    if config.drift_from != MID_WINDOW:
        return config
    drift_from = (
        landed_with["drift_from"]
        if landed_with
        else (start + timedelta(days=days // 2)).isoformat()
    )
    return replace(config, drift_from=drift_from)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
