"""The event vocabulary and landing rules that the generator, the table schemas, cleaning and ingest share.

What an event may say (its names, platforms, experiment variants, catalogue categories), how late a
line may land after the event happened, and the folder a landing day's files go to. Defined here,
with the standard library only, so the schemas and the cleaning rules do not depend on the
synthetic generator: any source that lands events in this layout is read and judged the same way.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

EVENT_NAMES = (
    "session_started",
    "user_logged_in",
    "product_viewed",
    "cart_item_added",
    "purchase_completed",
)
PLATFORMS = ("ios", "android", "web")
VARIANTS = ("A", "B")
CATEGORIES = ("electronics", "home", "fashion", "beauty", "sports", "toys", "books", "grocery")
# A line lands on the server's UTC day; the event it carries happened that day or up to this much before.
MAX_LATENESS = timedelta(days=3)


def day_folder(landing: Path, day: date) -> Path:
    return landing / f"date={day.isoformat()}"
