"""Small-count protection: what may be published about a group of individuals.

One rule everywhere (catalogue and count endpoint): a number, a listed value or an age bound is
published only when it rests on at least ``threshold`` individuals. Anything smaller, zero
included, is left out, so that an absent value never tells "none" from "a few". Threshold
suppression alone does not stop differencing (subtracting two published counts that differ by a
few individuals); docs/catalogue.md says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

K = TypeVar("K")
AGE_STEP = 5


def disclosed(count: int, threshold: int) -> int | None:
    """``count`` when it may be published, else None."""
    return count if count >= threshold else None


def disclosed_values(counts: Mapping[K, int], threshold: int) -> list[K]:
    """The values held by at least ``threshold`` individuals, in a stable order."""
    return sorted((value for value, n in counts.items() if n >= threshold), key=str)


def typical_age_range(ages: Mapping[int, int], threshold: int) -> tuple[int, int] | None:
    """(minimum, maximum) typical age, in whole years, rounded outwards to multiples of five.

    The bounds are the ages of the ``threshold``-th youngest and the ``threshold``-th oldest
    individual, so at least ``threshold`` individuals are at or beyond each bound: the youngest or
    oldest person is never singled out, and the range says what is typical, not what is extreme.
    None when there are too few individuals for that (the two bounds would cross).
    """
    if sum(ages.values()) < threshold:
        return None
    youngest = _kth(sorted(ages.items()), threshold)
    oldest = _kth(sorted(ages.items(), reverse=True), threshold)
    if youngest > oldest:  # too few individuals for two protected bounds
        return None
    return youngest // AGE_STEP * AGE_STEP, -(-oldest // AGE_STEP) * AGE_STEP


def _kth(histogram: list[tuple[int, int]], k: int) -> int:
    seen = 0
    for age, n in histogram:
        seen += n
        if seen >= k:
            return age
    raise ValueError("fewer individuals than asked for")  # guarded by the caller
