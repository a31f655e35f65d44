"""How a scheduling run cuts one site's and product's bookings into transactions."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.booking.appointments import BookingRequest
from services.booking.committer import _chunks

DAY = date(2030, 3, 1)


def requests(day: int, n: int) -> list[BookingRequest]:
    return [BookingRequest(citizen_id=f"c{day}-{i}", dose_number=1, reason="r") for i in range(n)]


def test_small_days_share_a_transaction_and_a_big_day_is_split() -> None:
    days = [
        (DAY, requests(0, 3)),
        (DAY + timedelta(1), requests(1, 4)),
        (DAY + timedelta(2), requests(2, 12)),
    ]
    chunks = _chunks(days, 10)
    assert [[(day, len(r)) for day, r in chunk] for chunk in chunks] == [
        [(DAY, 3), (DAY + timedelta(1), 4)],
        [(DAY + timedelta(2), 10)],
        [(DAY + timedelta(2), 2)],
    ]


@given(st.lists(st.integers(min_value=1, max_value=30), max_size=14), st.integers(1, 25))
def test_every_booking_once_in_day_order_and_no_transaction_over_the_size(
    sizes: list[int], size: int
) -> None:
    days = [(DAY + timedelta(d), requests(d, n)) for d, n in enumerate(sizes)]
    chunks = _chunks(days, size)
    flat = [r for chunk in chunks for _, piece in chunk for r in piece]
    assert flat == [r for _, rs in days for r in rs]
    assert all(sum(len(piece) for _, piece in chunk) <= size for chunk in chunks)
    order = [day for chunk in chunks for day, _ in chunk]
    assert order == sorted(order)
