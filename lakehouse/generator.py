"""Synthetic app events, shaped like the seed's `cart_item_added`, landed as JSONL files.

Every user has a fixed platform, experiment variant, catalogue taste and purchase propensity, and an
activity level that rises and falls in a slow cycle. A session is a run of product views, some of
which become cart adds, and a cart turns into a purchase with the user's propensity. Recent activity
and past purchases therefore predict purchases in the following week, which is what the model learns.

Output is a pure function of (seed, users, day): each day is drawn from its own random stream, so
landing 30 days at once or day by day gives the same bytes, and re-landing a day is idempotent.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np

PLATFORMS = ("ios", "android", "web")
PLATFORM_WEIGHTS = (0.4, 0.35, 0.25)
VARIANTS = ("A", "B")
CATEGORIES = ("electronics", "home", "fashion", "beauty", "sports", "toys", "books", "grocery")
SOURCE_PAGES = ("home", "search_results", "category", "recommendations")
N_ITEMS = 2000
EVENT_NAMES = ("session_started", "product_viewed", "cart_item_added", "purchase_completed")
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class GeneratorConfig:
    users: int = 3000
    seed: int = 7
    duplicate_rate: float = 0.01  # share of events delivered twice (network retries)


def day_folder(landing: Path, day: date) -> Path:
    return landing / f"date={day.isoformat()}"


class _Population:
    """Per-user traits, drawn once from the seed."""

    def __init__(self, config: GeneratorConfig):
        rng = np.random.default_rng([config.seed, 0])
        n = config.users
        self.user_ids = [f"usr_{i:07d}" for i in range(n)]
        self.platform = rng.choice(len(PLATFORMS), size=n, p=PLATFORM_WEIGHTS)
        self.variant = rng.integers(0, len(VARIANTS), size=n)
        self.base_sessions_per_day = rng.gamma(shape=0.9, scale=0.35, size=n)
        # Variant B's checkout converts a little better: a real effect for the experiment metrics.
        self.purchase_propensity = np.clip(rng.beta(1.3, 6.0, size=n) * np.where(self.variant == 1, 1.15, 1.0), 0, 0.95)
        self.cycle_days = rng.uniform(10, 40, size=n)
        self.cycle_phase = rng.uniform(0, 2 * math.pi, size=n)
        self.favourite_category = rng.integers(0, len(CATEGORIES), size=n)
        item_rng = np.random.default_rng([config.seed, 1])
        self.item_category = item_rng.integers(0, len(CATEGORIES), size=N_ITEMS)
        self.item_price = np.round(item_rng.lognormal(mean=3.3, sigma=0.8, size=N_ITEMS), 2)
        self.items_by_category = [np.flatnonzero(self.item_category == c) for c in range(len(CATEGORIES))]

    def sessions_per_day(self, day: date) -> np.ndarray:
        cycle = 0.5 + 0.5 * np.sin(2 * math.pi * day.toordinal() / self.cycle_days + self.cycle_phase)
        return self.base_sessions_per_day * (0.15 + 1.7 * cycle)


def _iso_millis(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _day_events(pop: _Population, config: GeneratorConfig, day: date) -> list[dict]:
    rng = np.random.default_rng([config.seed, 2, day.toordinal()])
    midnight = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    sessions = rng.poisson(pop.sessions_per_day(day))
    events: list[dict] = []

    def emit(name: str, ts: datetime, user: int, session_id: str, properties: dict) -> None:
        events.append(
            {
                "event_id": f"evt_{rng.bytes(8).hex()}",
                "event_name": name,
                "timestamp": _iso_millis(ts),
                "user_id": pop.user_ids[user],
                "session_id": session_id,
                "platform": PLATFORMS[pop.platform[user]],
                "properties": properties,
            }
        )

    for user in np.flatnonzero(sessions):
        variant = VARIANTS[pop.variant[user]]
        for _ in range(sessions[user]):
            session_id = f"ses_{rng.bytes(6).hex()}"
            # Sessions start before 22:00 so that a whole session stays inside its day's folder.
            ts = midnight + timedelta(seconds=float(rng.uniform(0, 22 * 3600)))
            emit("session_started", ts, user, session_id, {"experiment_variant": variant})
            cart: list[tuple[str, float, int]] = []
            for _ in range(1 + rng.poisson(3)):
                ts += timedelta(seconds=float(rng.exponential(45)) + 1)
                if rng.random() < 0.6:
                    candidates = pop.items_by_category[pop.favourite_category[user]]
                    item = int(candidates[rng.integers(0, len(candidates))])
                else:
                    item = int(rng.integers(0, N_ITEMS))
                common = {
                    "item_id": f"prod_{item:04d}",
                    "item_category": CATEGORIES[pop.item_category[item]],
                    "price_usd": float(pop.item_price[item]),
                    "source_page": SOURCE_PAGES[int(rng.integers(0, len(SOURCE_PAGES)))],
                    "experiment_variant": variant,
                }
                emit("product_viewed", ts, user, session_id, common)
                if rng.random() < 0.25:
                    quantity = 1 + int(rng.poisson(0.3))
                    ts += timedelta(seconds=float(rng.exponential(20)) + 1)
                    emit("cart_item_added", ts, user, session_id, {**common, "quantity": quantity})
                    cart.append((common["item_id"], common["price_usd"], quantity))
            if cart and rng.random() < pop.purchase_propensity[user] * 2.5:
                ts += timedelta(seconds=float(rng.exponential(60)) + 1)
                revenue = round(sum(price * qty for _, price, qty in cart), 2)
                emit(
                    "purchase_completed",
                    ts,
                    user,
                    session_id,
                    {
                        "order_id": f"ord_{rng.bytes(6).hex()}",
                        "revenue_usd": revenue,
                        "item_count": sum(qty for _, _, qty in cart),
                        "experiment_variant": variant,
                    },
                )
    events.sort(key=lambda e: (e["timestamp"], e["event_id"]))
    return events


def _with_redeliveries(rng: np.random.Generator, lines: list[str], rate: float) -> list[str]:
    """Re-send a share of lines a little later in the stream, as a client retry would."""
    out: list[str] = []
    pending: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        out.append(line)
        if rng.random() < rate:
            pending.append((i + int(rng.integers(1, 20)), line))
        due = [p for p in pending if p[0] <= i]
        for p in due:
            out.append(p[1])
            pending.remove(p)
    out.extend(line for _, line in pending)
    return out


def generate(landing: Path, start: date, days: int, config: GeneratorConfig = GeneratorConfig()) -> dict:
    """Land `days` days of events from `start` under `landing`; returns the manifest."""
    pop = _Population(config)
    landing.mkdir(parents=True, exist_ok=True)
    manifest_path = landing / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"days": {}}
    manifest["generator"] = asdict(config)
    for offset in range(days):
        day = start + timedelta(days=offset)
        events = _day_events(pop, config, day)
        lines = [json.dumps(e, separators=(",", ":")) for e in events]
        lines = _with_redeliveries(np.random.default_rng([config.seed, 3, day.toordinal()]), lines, config.duplicate_rate)
        folder = day_folder(landing, day)
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(folder / "events.jsonl", "".join(line + "\n" for line in lines))
        manifest["days"][day.isoformat()] = {"lines": len(lines), "events": len(events)}
    manifest["days"] = dict(sorted(manifest["days"].items()))
    _atomic_write(manifest_path, json.dumps(manifest, indent=2) + "\n")
    return manifest


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
