"""The statistics bench_pipeline reports (the side-by-side difference of doce and raw,
and the confidence interval of its median), and the arguments it refuses."""

from __future__ import annotations

import random

import pytest
from django.core.management import CommandError, call_command

from bench.raw import median_interval, paired


@pytest.mark.parametrize(
    ("n", "k"),
    [
        # The k-th smallest and k-th largest values bound the median with at least 95 %
        # (tables of the sign test): k is the largest with P(Binomial(n, 1/2) < k) <= 2.5 %.
        (6, 1),
        (8, 1),
        (10, 2),
        (12, 3),
        (16, 4),
        (20, 6),
    ],
)
def test_the_median_interval_is_the_sign_test_one(n, k):
    values = list(range(1, n + 1))
    random.Random(n).shuffle(values)

    assert median_interval(values) == (k, n - k + 1)


def test_too_few_values_give_no_interval():
    # Five values cover their median with 1 - 2/32 = 94 %: no 95 % interval exists.
    assert median_interval([3.0, 1.0, 2.0, 5.0, 4.0]) is None
    assert median_interval([5.0]) is None


def test_too_few_pairs_report_their_range_not_an_interval():
    figures = paired([2.0, 2.5, 1.0], [1.0, 1.0, 1.0])

    assert figures == {"n": 3, "median_ms": 1000, "range_ms": [0, 1500]}


def test_the_difference_is_taken_pair_by_pair_in_milliseconds():
    # The machine gets twice slower half-way: each raw sample slows with its doce sample,
    # and the difference of neighbours stays at the 100 ms doce adds.
    raw = [1.0, 1.1, 0.9, 1.0, 2.0, 2.1, 1.9, 2.0]
    doce = [value + 0.1 for value in raw]

    figures = paired(doce, raw)

    assert figures["n"] == 8
    assert figures["median_ms"] == 100
    assert figures["ci95_ms"] == [100, 100]


def test_a_difference_needs_its_pairs():
    assert paired([], []) == {"n": 0}
    with pytest.raises(ValueError):
        paired([1.0, 2.0], [1.0])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--idle", "30"], "needs --pool"),
        (["--pool", "1", "--idle", "-1"], "takes 0 or more seconds"),
        (["--no-cold"], "--no-cold needs --pool"),
        (["--sizes", "1,x"], "numbers separated by commas"),
    ],
)
def test_the_bench_refuses_arguments_it_cannot_honour(arguments, message):
    with pytest.raises(CommandError, match=message):
        call_command("bench_pipeline", *arguments)
