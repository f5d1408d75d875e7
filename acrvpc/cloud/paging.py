"""One pager for the listing APIs: every page of a Describe/List call, item by item.

Two paging styles are in use:

- **token** (ECS, VPC): the request carries ``MaxResults`` (VPC: ``MaxResult``) and the ``NextToken``
  of the previous answer; the last page answers an empty ``NextToken``.
- **page** (Container Registry): the request carries ``PageNo`` (from 1) and ``PageSize``; the answer
  carries ``TotalCount`` (a string on the wire); the listing ends when that many items were seen or a
  page comes back empty.

The caller builds the request (it knows the API and its filters); :func:`paginate` only threads the
cursor through and reads the answer's paging keys, from SDK response-body models (``next_token``,
``total_count``) or from their ``to_map()`` dicts (``NextToken``, ``TotalCount``) alike. Items are
yielded lazily: a caller that stops early makes no further call.

A misbehaving server cannot make a listing loop forever: a token already seen in this listing ends
it (with a warning on this module's logger), and so does an empty page in the page style.

Lives in the cloud-access layer (beside the clients, the call retries and the error classification):
it knows the providers' paging conventions and nothing of any stage, so every stage, the command line
and the diagnosis can import it without importing each other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal, TypeVar

T = TypeVar("T")
logger = logging.getLogger(__name__)


def _field(body: Any, attr: str, key: str) -> Any:
    """``body.attr`` of an SDK model, or ``body[key]`` of its ``to_map()`` dict."""
    if isinstance(body, dict):
        return body.get(key)
    return getattr(body, attr, None)


def _count(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def paginate(
    fetch: Callable[[Any], Any],
    items: Callable[[Any], Iterable[T] | None],
    *,
    what: str,
    by: Literal["token", "page"] = "token",
) -> Iterator[T]:
    """Every item of a paged listing, fetching the next page only when the caller gets that far.

    Args:
        fetch: makes one call. ``by="token"``: given the ``NextToken`` to send (``None`` for the
            first page); ``by="page"``: given the ``PageNo`` to send (1, 2, ...). Returns the answer's
            body (SDK model or dict).
        items: the page's items from a body (``None`` or an empty list for none).
        what: the listing in words (e.g. ``ECS DescribeSecurityGroups in VPC vpc-...``), for the warning
            when the server repeats a token.
        by: the paging style (module docstring).

    Yields:
        The items of each page, in the order the server gives them.

    Raises:
        ValueError: an unknown ``by``. Errors of ``fetch`` and ``items`` pass through unchanged.
    """
    if by == "token":
        yield from _by_token(fetch, items, what)
    elif by == "page":
        yield from _by_page(fetch, items)
    else:
        raise ValueError(f"paginate: by must be 'token' or 'page', not {by!r}")


def _by_token(fetch: Callable[[str | None], Any], items: Callable[[Any], Iterable[T] | None], what: str) -> Iterator[T]:
    seen: set[str] = set()
    token: str | None = None
    while True:
        body = fetch(token)
        yield from items(body) or ()
        token = _field(body, "next_token", "NextToken") or None
        if not token:
            return
        if token in seen:
            logger.warning(
                "%s: the server answered NextToken %r a second time; the listing ends here (it may be incomplete)",
                what,
                token,
            )
            return
        seen.add(token)


def _by_page(fetch: Callable[[int], Any], items: Callable[[Any], Iterable[T] | None]) -> Iterator[T]:
    page, count = 1, 0
    while True:
        body = fetch(page)
        batch = list(items(body) or ())
        yield from batch
        count += len(batch)
        if not batch or count >= _count(_field(body, "total_count", "TotalCount")):
            return
        page += 1
