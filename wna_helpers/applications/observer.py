"""A simulated observer with a known internal template: the ground truth for classification images of people.

Psychophysics models an observer in a two-alternative task as a template matcher with internal noise: it
correlates the stimulus with an internal template, adds noise of its own, and answers A when the sum exceeds a
criterion. Its classification image recovers the template, which no real observer reveals; this one does, so
it checks the whole pipeline (trials, answers, CI, statistics) against a known answer.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["TemplateObserver", "stimulus_normal"]


def stimulus_normal(x: torch.Tensor) -> torch.Tensor:
    """One standard-normal number per stimulus, a deterministic function of its pixels (a hash of them, mapped by
    Box-Muller): the same stimulus always gets the same number, and over many stimuli the numbers behave as
    independent draws, unrelated to any pixel pattern. ``x``: ``(N, ...)``; returns float64 ``(N,)``."""
    q = (x.detach().flatten(1).double().cpu() * 2 ** 20).floor().long()
    d = q.shape[1]
    prime = 2 ** 31 - 1
    w1 = (torch.arange(1, d + 1, dtype=torch.long) * 2654435761) % prime + 1
    w2 = (torch.arange(1, d + 1, dtype=torch.long) * 40503 + 12345) % prime + 1
    u1 = (((q * w1).sum(1) % prime).double() + 0.5) / prime
    u2 = (((q * w2).sum(1) % prime).double() + 0.5) / prime
    return torch.sqrt(-2 * torch.log(u1)) * torch.cos(2 * math.pi * u2)


class TemplateObserver(nn.Module):
    """Answers "A or B?" by matching the stimulus against an internal template, with internal noise.

    The decision variable is ``d = <x - mean, t> / |t| + internal_noise * z(x)``, with ``mean`` the noise's mean
    pixel and ``z(x)`` :func:`stimulus_normal` scaled by the spread of ``<x - mean, t> / |t|`` under the noise
    (``noise_sd``); the observer answers ``classes[0]`` when ``d > 0``. As a module it returns logits ``(N, K)``
    (``d`` for ``classes[0]``, ``-d`` for ``classes[1]``, a large negative value for the others), so every method of
    the library runs on it as on a network, and its answers can go through the response path too.

    Args:
        template: ``(C, H, W)`` the internal template (e.g. the difference of the two classes' mean images).
        classes: ``(a, b)``; default ``(0, 1)``.
        num_classes: ``K``; default 10.
        internal_noise: the internal noise's standard deviation relative to the template response's under the
            noise; default 1.0 (as much internal as external noise, typical of people).
        mean: the noise's mean pixel; default 0.5 (U[0, 1]).
        noise_sd: the noise's pixel standard deviation; default ``sqrt(1/12)`` (U[0, 1]).

    Example:
        >>> t = torch.zeros(1, 4, 4); t[0, 0, 0] = 1.0
        >>> obs = TemplateObserver(t, internal_noise=0.0)
        >>> x = torch.full((2, 1, 4, 4), 0.5); x[0, 0, 0, 0] = 0.9
        >>> obs(x).argmax(1).tolist()
        [0, 1]
    """

    def __init__(self, template: torch.Tensor, *, classes: tuple[int, int] = (0, 1), num_classes: int = 10,
                 internal_noise: float = 1.0, mean: float = 0.5, noise_sd: float = math.sqrt(1 / 12)) -> None:
        super().__init__()
        t = torch.as_tensor(template, dtype=torch.float32)
        if t.dim() != 3 or not bool(torch.isfinite(t).all()) or float(t.norm()) == 0:
            raise ValueError(f"template must be a finite, non-zero (C, H, W) tensor, got {tuple(t.shape)}")
        a, b = classes
        if a == b or not (0 <= a < num_classes and 0 <= b < num_classes):
            raise ValueError(f"classes must be two different indices in [0, {num_classes}), got {classes}")
        if not math.isfinite(internal_noise) or internal_noise < 0:
            raise ValueError(f"internal_noise must be a finite number >= 0, got {internal_noise!r}")
        self.register_buffer("unit", (t / t.norm()).flatten())
        self.classes, self.num_classes = (int(a), int(b)), int(num_classes)
        self.internal_noise, self.mean, self.noise_sd = float(internal_noise), float(mean), float(noise_sd)
        self.input_shape = tuple(t.shape)

    def decision(self, x: torch.Tensor) -> torch.Tensor:
        """The decision variable ``d`` of each stimulus, float64 ``(N,)``."""
        match = ((x.flatten(1).float() - self.mean) @ self.unit).double().cpu()
        return match + self.internal_noise * self.noise_sd * stimulus_normal(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        d = self.decision(x).float().to(x.device)
        out = torch.full((len(x), self.num_classes), -1e9, device=x.device)
        a, b = self.classes
        out[:, a], out[:, b] = d, -d
        return out
