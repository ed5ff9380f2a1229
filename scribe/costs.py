"""``scribe costs``: the usage ledger in the terminal, per UTC day, model or user, in USD and GBP.

It reads the database alone, as ``scribe keys`` does (:func:`scribe.admin.database`), and adds up
the ledger with the same queries as ``GET /v1/admin/costs`` (:mod:`store.costs`). Pounds are at
``SCRIBE_GBP_PER_USD``: a setting, never a network call.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any, TextIO

from core.settings import Settings
from scribe.admin import database
from store import costs
from store.costs import Ledger, Totals

BAR_WIDTH = 30  # characters of the costliest row's bar
_EIGHTHS = " ▏▎▍▌▋▊▉"


def add_parser(commands: Any) -> None:
    """``costs`` on the ``scribe`` command line."""
    parser = commands.add_parser(
        "costs", help="what the speech model cost per UTC day, model or user, in USD and GBP (from the ledger)"
    )
    parser.add_argument("--days", type=_days, default=30, metavar="N", help="the last N UTC days, today included")
    parser.add_argument("--by", choices=("day", "model", "user"), default="day", help="one row per (default: day)")
    parser.add_argument(
        "--until", type=date.fromisoformat, metavar="YYYY-MM-DD", help="the last day shown instead of today"
    )


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if not 1 <= days <= costs.MAX_DAYS:
        raise argparse.ArgumentTypeError(f"give 1 to {costs.MAX_DAYS} days, not {days}")
    return days


async def report(
    args: argparse.Namespace, settings: Settings, out: TextIO = sys.stdout, err: TextIO = sys.stderr
) -> int:
    try:
        span = costs.window(args.days, until=args.until)
    except ValueError as exc:
        print(f"scribe costs: {exc}", file=err)
        return 2
    async with database(settings) as pool:
        ledger = await costs.ledger(pool, span, top=0)
    write(ledger, args.by, settings.gbp_per_usd, out, today=datetime.now(UTC).date())
    return 0


def write(ledger: Ledger, by: str, gbp_per_usd: float, out: TextIO, *, today: date) -> None:
    """The ledger as a table (one row per ``by``, each with a bar), then the totals, cost per job and today's pace."""
    span = ledger.window
    days = f"{span.days} UTC day{'s' if span.days != 1 else ''}"
    what = f"{days} from {span.first_day} to {span.last_day}" if span.days > 1 else f"UTC day {span.last_day}"
    if ledger.empty:
        print(f"No calls to the speech model in the {what}: the ledger is empty, nothing was billed.", file=out)
        return
    money = _Money(gbp_per_usd)
    print(f"Cost of the speech model over the {what} (GBP at {gbp_per_usd:g} per USD).", file=out)
    print(file=out)
    rows: Sequence[tuple[list[str], Totals]]
    if by == "model":
        headers = ["MODEL", "BACKEND"]
        rows = [([m.model, m.backend], m.totals) for m in ledger.models]
    elif by == "user":
        headers = ["USER"]
        rows = [([u.user or "(no account)"], u.totals) for u in ledger.users]
    else:
        headers = ["DAY"]
        rows = [([d.day.isoformat()], d.totals) for d in ledger.days]
    most = max(totals.cost_usd for _, totals in rows)
    table = [[*label, *money.columns(totals), bar(totals.cost_usd, most)] for label, totals in rows]
    blank = [""] * (len(headers) - 1)
    table.append(["TOTAL", *blank, *money.columns(ledger.total), ""])
    _table(
        out,
        [*headers, "CALLS", "CACHE HITS", "MINUTES BILLED", "USD", "GBP", "SAVED USD", ""],
        table,
        labels=len(headers),
    )
    print(file=out)
    if ledger.total.saved_usd:
        print(
            f"The caches answered {ledger.total.cache_hits:,} of {ledger.total.calls:,} calls without billing: "
            f"they saved {money.both(ledger.total.saved_usd)}.",
            file=out,
        )
    per_job = ledger.per_job
    if per_job.jobs:
        print(
            f"Cost per job ({per_job.jobs} job{'s' if per_job.jobs != 1 else ''}): "
            f"mean {money.both(per_job.mean_usd)}, "
            f"p90 {money.both(per_job.p90_usd)}, max {money.both(per_job.max_usd)}.",
            file=out,
        )
    else:  # calls whose jobs were deleted, or made outside a job
        print("Cost per job: no job of these calls is still stored.", file=out)
    if span.last_day == today:
        print(
            f"Today so far: {money.both(ledger.last_day_totals.cost_usd)}; at this pace by midnight UTC: "
            f"{money.both(ledger.projected_usd)}.",
            file=out,
        )


def _table(out: TextIO, headers: list[str], rows: list[list[str]], *, labels: int) -> None:
    """Columns padded to their widest cell: the first ``labels`` and the last (the bar) to the left, figures to the
    right."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    for row in [headers, *rows]:
        cells = [
            cell.ljust(width) if n < labels or n == len(row) - 1 else cell.rjust(width)
            for n, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip(), file=out)


def bar(value: float, most: float, width: int = BAR_WIDTH) -> str:
    """``value`` as a bar of block characters, ``width`` of them for ``most``; any cost shows at least a sliver."""
    if most <= 0 or value <= 0:
        return ""
    eighths = max(1, round(value / most * width * 8))
    return "█" * (eighths // 8) + _EIGHTHS[eighths % 8].strip()


class _Money:
    def __init__(self, gbp_per_usd: float) -> None:
        self.rate = gbp_per_usd

    def columns(self, totals: Totals) -> list[str]:
        return [
            f"{totals.calls:,}",
            f"{totals.cache_hits:,}",
            f"{totals.billed_seconds / 60:,.1f}",
            _amount(totals.cost_usd),
            _amount(totals.cost_usd * self.rate),
            _amount(totals.saved_usd) if totals.saved_usd else "",
        ]

    def both(self, usd: float) -> str:
        return f"${_amount(usd)} (£{_amount(usd * self.rate)})"


def _amount(value: float) -> str:
    """Cents and below: a minute of audio costs a fraction of a cent."""
    return f"{value:,.4f}" if abs(value) < 100 else f"{value:,.2f}"
