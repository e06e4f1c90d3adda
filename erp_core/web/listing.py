"""What the lists share: sorting by a column, a date range, paging, all kept in the URL; and the CSV
export of exactly what the filter shows (every matching row, not only the page).

The CSV is UTF-8 with a byte-order mark, so that Excel opens Chinese text correctly; a text cell that
starts like a formula (= + - @) is written with a leading apostrophe, so a spreadsheet never runs it.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass

from flask import Response, request, url_for
from flask_babel import gettext as _
from sqlalchemy import func, select

from .framework import PAGE_SIZE, int_arg, web

CSV_MAX_ROWS = 100_000
_FORMULA = re.compile(r"^[=+\-@\t\r]")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


@dataclass
class Listing:
    """The list's request: filters read from the URL, with the problems found in them."""
    sort: str
    descending: bool
    offset: int
    date_from: dt.date | None
    date_to: dt.date | None
    errors: list
    csv: bool

    @property
    def sort_arg(self) -> str:
        return ("-" if self.descending else "") + self.sort


def date_arg(name: str, errors: list) -> dt.date | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    try:
        day = dt.date.fromisoformat(value)
        if 1900 <= day.year <= 9998:
            return day
    except ValueError:
        pass
    errors.append({"text": _("'%(value)s' is not a date", value=value[:40]),
                   "fix": _("Enter the date as YYYY-MM-DD.")})
    return None


def read(columns: dict, default: str) -> Listing:
    """The sort (a column key, '-' before it for descending), the date range and the page."""
    errors: list = []
    sort = request.args.get("sort", "").strip() or default
    descending = sort.startswith("-")
    key = sort.lstrip("-")
    if key not in columns:
        descending, key = default.startswith("-"), default.lstrip("-")
    date_from, date_to = date_arg("date_from", errors), date_arg("date_to", errors)
    return Listing(sort=key, descending=descending, offset=int_arg("offset", 0) or 0, date_from=date_from,
                   date_to=date_to, errors=errors, csv=request.args.get("format") == "csv")


def in_range(column, listing: Listing, *, datetime: bool = False) -> list:
    """WHERE clauses for the date range (both ends included); a datetime column by its UTC day."""
    out = []
    if listing.date_from:
        start = dt.datetime.combine(listing.date_from, dt.time(), dt.timezone.utc) if datetime else listing.date_from
        out.append(column >= start)
    if listing.date_to:
        if datetime:
            out.append(column < dt.datetime.combine(listing.date_to + dt.timedelta(days=1), dt.time(), dt.timezone.utc))
        else:
            out.append(column <= listing.date_to)
    return out


def ordered(stmt, columns: dict, listing: Listing, tiebreak):
    column = columns[listing.sort]
    return stmt.order_by(column.desc() if listing.descending else column.asc(),
                         tiebreak.desc() if listing.descending else tiebreak.asc())


def page_of(s, stmt, columns: dict, listing: Listing, tiebreak):
    """(total, rows of this page) of the filtered statement, in the chosen order."""
    total = s.scalar(select(func.count()).select_from(stmt.subquery()))
    rows = s.execute(ordered(stmt, columns, listing, tiebreak).limit(PAGE_SIZE).offset(listing.offset)).all()
    return total, rows


def all_rows(s, stmt, columns: dict, listing: Listing, tiebreak):
    return s.execute(ordered(stmt, columns, listing, tiebreak).limit(CSV_MAX_ROWS)).all()


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value)
    if _FORMULA.match(text) and not _NUMBER.match(text):
        return "'" + text
    return text


def csv_response(name: str, header: list, rows) -> Response:
    """The rows as a CSV download: UTF-8 with BOM, CRLF line ends (what Excel expects)."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([str(h) for h in header])
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    stamp = dt.date.today().isoformat()
    return Response(out.getvalue().encode("utf-8"), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}-{stamp}.csv"',
                             "Content-Type": "text/csv; charset=utf-8"})


def list_url(endpoint: str, **changes) -> str:
    """This list's URL with its filters, sort and page kept, some of them changed (None drops one).
    Query keys that url_for would read as its own options (_anchor, _method, ...) are never passed on."""
    args = {k: v for k, v in request.args.items() if not k.startswith("_")}
    args.update(request.view_args or {})
    args.update(changes)
    return url_for(endpoint, **{k: v for k, v in args.items() if v is not None and v != ""})


web.add_app_template_global(list_url, "list_url")
