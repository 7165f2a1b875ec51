"""Keyset pages for the trader's own tables (order history, ledger) on server-rendered pages.

A page is "the `size` rows before (or after) this id" in id order: a range of the
(user, -id) indexes, so the millionth row costs what the first does. No page numbers and
no "page 3 of 40 000": both need a COUNT over every row. The REST API pages the same way
with DRF's CursorPagination (quantumtrades.core.api.ApiPagination).
"""

from dataclasses import dataclass, field


@dataclass
class KeysetPage:
    """One page, newest first. `older` / `newer`: the id to page on from, None at either end."""

    rows: list = field(default_factory=list)
    older: int | None = None  # pass as `before` for the next, older page
    newer: int | None = None  # pass as `after` for the previous, newer page

    def __iter__(self):
        return iter(self.rows)

    def __len__(self):
        return len(self.rows)

    @property
    def paged(self) -> bool:
        return self.older is not None or self.newer is not None


def keyset_id(value) -> int | None:
    """A page's `before` / `after` query parameter; anything but a positive id is the first page."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number < 2**63 else None


def keyset_page(queryset, *, size: int, before: int | None = None, after: int | None = None) -> KeysetPage:
    """The page of `queryset` (newest first by id) just older than `before`, or just newer
    than `after`, or the newest one. Two queries: the page (one row extra says whether
    there is more that way) and an index probe for the other way."""
    if after is not None:
        rows = list(queryset.filter(id__gt=after).order_by("id")[: size + 1])
        more_newer = len(rows) > size
        rows = rows[:size][::-1]
        more_older = bool(rows) and queryset.filter(id__lt=rows[-1].pk).exists()
    else:
        page = queryset.filter(id__lt=before) if before is not None else queryset
        rows = list(page.order_by("-id")[: size + 1])
        more_older = len(rows) > size
        rows = rows[:size]
        more_newer = bool(rows) and before is not None and queryset.filter(id__gt=rows[0].pk).exists()
    if not rows:
        # Past either end (a stale link): the newest page, rather than an empty table.
        return keyset_page(queryset, size=size) if (before, after) != (None, None) else KeysetPage()
    return KeysetPage(
        rows=rows,
        older=rows[-1].pk if more_older else None,
        newer=rows[0].pk if more_newer else None,
    )
