"""The side-by-side table's verdict rule (wna_helpers.paper.verdicts): every branch with a known answer."""
from __future__ import annotations

import math

import pytest
import torch

from wna_helpers.paper import verdicts as V

NAN = float("nan")


def test_within_the_range_of_the_networks_is_reproduced_at_both_ends():
    assert V.verdict(0.6, [0.6, 0.7, 0.9]) == V.REPRODUCED
    assert V.verdict(0.9, [0.6, 0.7, 0.9]) == V.REPRODUCED
    assert V.verdict(0.9000001, [0.6, 0.7, 0.9]) == V.REPRODUCED  # float32 rounding of a printed value
    assert V.verdict(0.90001, [0.6, 0.7, 0.9]) == V.NOT_REPRODUCED
    assert V.verdict(0.95, [0.6, 0.7, 0.9]) == V.NOT_REPRODUCED


def test_partly_needs_the_qualitative_claim_in_more_than_half_of_the_defined_networks():
    assert V.verdict(0.95, [0.6, 0.7, 0.9], [True, True, False]) == V.PARTLY
    assert V.verdict(0.95, [0.6, 0.7, 0.9, 0.8], [True, True, False, False]) == V.NOT_REPRODUCED  # a tie is no majority
    # an undefined network's claim does not count: one of the two defined ones is no majority
    assert V.verdict(0.95, [0.6, 0.7, NAN], [True, False, True]) == V.NOT_REPRODUCED
    assert V.verdict(0.95, [0.6, 0.7, NAN], [True, True, None]) == V.PARTLY
    assert V.verdict(0.95, [0.6, 0.7, 0.9]) == V.NOT_REPRODUCED  # no claim given: never partly


def test_an_undefined_score_is_not_testable_not_low():
    assert V.verdict(0.5, [NAN, NAN, 0.4]) == V.NOT_TESTABLE
    assert V.verdict(0.5, [NAN, NAN, 0.4], [True, True, True]) == V.NOT_TESTABLE
    # a NaN network is left out of the range rather than counted as the lowest
    assert V.verdict(0.5, [NAN, 0.45, 0.55]) == V.REPRODUCED


def test_a_curve_is_reproduced_only_when_the_paper_lies_in_the_band_at_every_point():
    band = torch.tensor([[0.1, 0.4, 0.8], [0.1, 0.6, 0.9]])
    assert V.verdict([0.1, 0.5, 0.85], band) == V.REPRODUCED
    assert V.verdict([0.1, 0.5, 0.95], band) == V.NOT_REPRODUCED
    assert V.verdict([0.1, 0.5, 0.95], band, [True, True]) == V.PARTLY
    with_nan = torch.tensor([[0.1, 0.4, NAN], [0.1, 0.6, 0.9], [0.1, 0.5, 0.8]])
    s = V.spread(with_nan)  # a curve with an undefined point is an undefined network
    assert (s.n, s.of) == (2, 3) and s.high.tolist() == pytest.approx([0.1, 0.6, 0.9])


def test_spread_gives_median_and_range_of_the_defined_values():
    s = V.spread([0.6, NAN, 0.9, 0.7])
    assert (s.n, s.of) == (3, 4)
    assert (float(s.median), float(s.low), float(s.high)) == pytest.approx((0.7, 0.6, 0.9))
    empty = V.spread([NAN, NAN])
    assert empty.n == 0 and math.isnan(float(empty.median))


def test_printed_verdict_rounds_to_the_papers_digits():
    assert V.printed_verdict(0.9562, 0.96, 2) == V.REPRODUCED
    assert V.printed_verdict(0.9549, 0.96, 2) == V.NOT_REPRODUCED
    assert V.printed_verdict(NAN, 0.96, 2) == V.NOT_TESTABLE


def test_bad_input_is_refused_with_what_was_wrong():
    with pytest.raises(ValueError, match="paper's value must be finite"):
        V.verdict(NAN, [0.1, 0.2])
    with pytest.raises(ValueError, match=r"one entry per network of the paper's shape \(3,\)"):
        V.verdict([0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(ValueError, match="qualitative needs one entry per network"):
        V.verdict(0.1, [0.1, 0.2], [True])
    with pytest.raises(ValueError, match="one number or one curve per network"):
        V.verdict(0.1, [])
