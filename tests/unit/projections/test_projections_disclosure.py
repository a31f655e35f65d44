"""Small-number suppression and rounding of public statistics, and that a withheld cell
cannot be recovered by subtracting the published cells from the published total."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.projections.domain import (
    EXACT_THRESHOLD,
    SUPPRESS_BELOW,
    disclosed,
    disclosed_with_total,
    possible_counts,
)


@pytest.mark.parametrize(
    ("count", "shown"),
    [(0, 0), (1, None), (4, None), (5, 5), (7, 5), (8, 10), (12, 10), (13, 15), (1234, 1235)],
)
def test_counts_below_five_are_withheld_and_the_rest_rounded_to_fives(
    count: int, shown: int | None
) -> None:
    assert disclosed(count, SUPPRESS_BELOW) == shown


def test_exact_callers_see_every_count_as_it_is() -> None:
    assert [disclosed(c, EXACT_THRESHOLD) for c in (0, 1, 4, 7)] == [0, 1, 4, 7]
    assert disclosed_with_total([0, 4, 4], EXACT_THRESHOLD) == ([0, 4, 4], 8)


def test_the_threshold_is_configurable() -> None:
    assert [disclosed(c, 10) for c in (9, 10, 14, 15)] == [None, 10, 10, 20]


def test_what_a_published_figure_tells_about_the_count_behind_it() -> None:
    for published in (None, 0, 5, 10, 1235):
        low, high = possible_counts(published, SUPPRESS_BELOW)
        assert {disclosed(c, SUPPRESS_BELOW) for c in range(low, high + 1)} == {published}
        assert disclosed(low - 1, SUPPRESS_BELOW) != published or low == 0
        assert disclosed(high + 1, SUPPRESS_BELOW) != published


def test_a_total_that_would_pin_the_withheld_cells_is_withheld_too() -> None:
    # 0, 4, 4: the total 8 publishes as 10, so both withheld cells would have to be 4.
    assert disclosed_with_total([0, 4, 4], SUPPRESS_BELOW) == ([0, None, None], None)
    # 1 beside 5: a total of 5 would say the withheld cell is 1 or 2.
    assert disclosed_with_total([1, 5], SUPPRESS_BELOW) == ([None, 5], None)
    # 1 beside 12: a total of 15 (13) leaves it anything from 1 to 4: published.
    assert disclosed_with_total([1, 12], SUPPRESS_BELOW) == ([None, 10], 15)
    assert disclosed_with_total([0, 0], SUPPRESS_BELOW) == ([0, 0], 0)


def _what_subtraction_leaves(
    shown: list[int | None], total: int, withheld: int, threshold: int
) -> set[int]:
    """Every value the withheld cell `withheld` could have, to someone who knows only the
    published cells and total (brute force over every count each figure could hide)."""
    choices = []
    for index, published in enumerate(shown):
        low, high = possible_counts(published, threshold)
        choices.append(range(low, high + 1) if index != withheld else range(1, threshold))
    return {
        cells[withheld]
        for cells in itertools.product(*choices)
        if disclosed(sum(cells), threshold) == total
    }


@settings(max_examples=300, deadline=None)
@given(
    cells=st.lists(st.integers(min_value=0, max_value=30), min_size=1, max_size=4),
    threshold=st.sampled_from([3, 5, 10]),
)
def test_no_withheld_cell_is_narrowed_by_the_published_total(
    cells: list[int], threshold: int
) -> None:
    shown, total = disclosed_with_total(cells, threshold)
    assert total is None or total == disclosed(sum(cells), threshold)
    if total is None:
        return
    for index, published in enumerate(shown):
        if published is None:
            left = _what_subtraction_leaves(shown, total, index, threshold)
            assert left == set(range(1, threshold)), (cells, shown, total, left)
