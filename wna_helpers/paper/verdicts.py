"""The one verdict rule by which a number of the paper counts as reproduced, written before any measurement.

A paper number is set against the spread of networks trained the paper's way (several seeds,
:mod:`~wna_helpers.zoo.paper_recipe`), never against one network:

- **not testable** when fewer than :data:`MIN_DEFINED` networks give the quantity a value (an undefined
  score is not a low one);
- **reproduced** when the paper's value lies within the range of the networks' values (the smallest to the
  largest, to float32 rounding; for a curve, at every point);
- **partly** otherwise, when the paper's qualitative claim holds (same top class, above twice chance, most CIs
  fed back as their class, the curve crossing one half near where the paper's does) for more than half of the
  networks with a value;
- **not reproduced** otherwise.

A number that involves no network (the Gabor dictionary's PCA) is reproduced when ours rounds to the paper's
printed digits (:func:`printed_verdict`). A number from another network than the paper's (its wider Colab
Fashion-MNIST model) is context, not a row to match (:data:`CONTEXT`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

__all__ = ["REPRODUCED", "PARTLY", "NOT_REPRODUCED", "NOT_TESTABLE", "CONTEXT", "VERDICTS", "MIN_DEFINED", "ROUNDING",
           "Spread", "spread", "verdict", "printed_verdict"]

REPRODUCED, PARTLY, NOT_REPRODUCED = "reproduced", "partly", "not reproduced"
NOT_TESTABLE, CONTEXT = "not testable", "context"
#: Every verdict, in the order the chapter counts them.
VERDICTS: tuple[str, ...] = (REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_TESTABLE, CONTEXT)
#: Fewest networks with a defined value for a verdict other than "not testable".
MIN_DEFINED = 2
#: The range's ends are widened by this much, so that float32 rounding of a value the paper printed exactly (0.1 at
#: w = 0 of a gamma curve) does not decide a verdict.
ROUNDING = 1e-6


@dataclass(frozen=True)
class Spread:
    """The networks' values of one quantity: how many are defined, their median and range (per point for curves).

    Attributes:
        n: networks with a defined (finite) value.
        of: networks asked.
        median, low, high: float64 tensors, ``()`` for numbers or ``(P,)`` for curves; NaN when ``n == 0``.
    """

    n: int
    of: int
    median: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor


def _values(values: Sequence[float] | Sequence[Sequence[float]] | torch.Tensor) -> torch.Tensor:
    v = torch.as_tensor(values, dtype=torch.float64)
    if v.dim() not in (1, 2) or v.shape[0] == 0:
        raise ValueError(f"values must hold one number or one curve per network (shape (S,) or (S, P), S >= 1); "
                         f"got shape {tuple(v.shape)}")
    return v


def spread(values: Sequence[float] | Sequence[Sequence[float]] | torch.Tensor) -> Spread:
    """Median and range of the defined values: a network counts only when its value (every point of its curve)
    is finite.

    Args:
        values: one number per network ``(S,)`` or one curve per network ``(S, P)``.

    Raises:
        ValueError: no network, or a tensor of another rank.

    Example:
        >>> s = spread([0.6, float("nan"), 0.9, 0.7])
        >>> s.n, s.of, float(s.median), float(s.low), float(s.high)
        (3, 4, 0.7, 0.6, 0.9)
    """
    v = _values(values)
    ok = torch.isfinite(v) if v.dim() == 1 else torch.isfinite(v).all(1)
    d = v[ok]
    if len(d) == 0:
        nan = torch.full(v.shape[1:], float("nan"), dtype=torch.float64)
        return Spread(0, len(v), nan, nan.clone(), nan.clone())
    return Spread(int(ok.sum()), len(v), d.quantile(0.5, dim=0), d.min(0).values, d.max(0).values)


def verdict(paper: float | Sequence[float] | torch.Tensor,
            values: Sequence[float] | Sequence[Sequence[float]] | torch.Tensor,
            qualitative: Sequence[bool | None] | None = None) -> str:
    """The verdict of one paper number (or curve) against the networks' values (the rule of this module).

    Args:
        paper: the paper's number, or its curve ``(P,)``; must be finite.
        values: one number ``(S,)`` or one curve ``(S, P)`` per network; NaN where undefined.
        qualitative: per network, whether the paper's qualitative claim holds for it (None: undefined; a network
            whose value is undefined is not counted either); default None (no qualitative claim: never "partly").

    Returns:
        One of ``"reproduced"``, ``"partly"``, ``"not reproduced"``, ``"not testable"``.

    Raises:
        ValueError: a paper value that is not finite, a curve length or network count that does not match.

    Example:
        >>> verdict(0.624, [0.70, 0.55, 0.81])
        'reproduced'
        >>> verdict(0.953, [0.70, 0.55, 0.81], qualitative=[True, True, False])
        'partly'
        >>> verdict(0.953, [0.70, float("nan"), float("nan")])
        'not testable'
    """
    p = torch.as_tensor(paper, dtype=torch.float64)
    if not bool(torch.isfinite(p).all()):
        raise ValueError(f"the paper's value must be finite, got {paper!r}")
    v = _values(values)
    if v.shape[1:] != p.shape:
        raise ValueError(f"values must have one entry per network of the paper's shape {tuple(p.shape)}; "
                         f"got shape {tuple(v.shape)}")
    if qualitative is not None and len(qualitative) != len(v):
        raise ValueError(f"qualitative needs one entry per network ({len(v)}), got {len(qualitative)}")
    s = spread(v)
    if s.n < MIN_DEFINED:
        return NOT_TESTABLE
    if bool(((s.low - ROUNDING <= p) & (p <= s.high + ROUNDING)).all()):
        return REPRODUCED
    if qualitative is not None:
        defined = (torch.isfinite(v) if v.dim() == 1 else torch.isfinite(v).all(1)).tolist()
        said = [q for q, ok in zip(qualitative, defined) if q is not None and ok]
        if said and 2 * sum(bool(q) for q in said) > len(said):
            return PARTLY
    return NOT_REPRODUCED


def printed_verdict(ours: float, paper: float, digits: int) -> str:
    """A number without a network behind it: reproduced when ``ours`` rounds to the paper's printed value at
    ``digits`` decimals, not reproduced otherwise; not testable when ``ours`` is NaN.

    Example:
        >>> printed_verdict(0.9562, 0.96, 2), printed_verdict(0.951, 0.96, 2)
        ('reproduced', 'not reproduced')
    """
    if not math.isfinite(paper):
        raise ValueError(f"the paper's value must be finite, got {paper!r}")
    if not math.isfinite(ours):
        return NOT_TESTABLE
    return REPRODUCED if round(ours, digits) == round(paper, digits) else NOT_REPRODUCED
