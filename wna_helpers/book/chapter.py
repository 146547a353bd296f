"""What every chapter of the book opens with: one call that fixes the profile and the
quantities the prose is computed from (class counts, chance, the largest entropy).

Example:
    >>> from wna_helpers.book import chapter
    >>> ch = chapter.setup("quick", show=False)
    >>> ch.chance, round(ch.max_entropy, 3)
    (0.1, 3.322)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import torch

from ..config import Profile, default_device, get_profile
from ..zoo.data import class_names, dataset_names
from ..zoo.models import CNN_NAMES, model_names
from ..engine.stimuli import Stimulus, as_stimulus

if TYPE_CHECKING:
    from .studies import Subject

__all__ = ["Chapter", "setup", "show"]


@dataclass(frozen=True)
class Chapter:
    """The context of one chapter.

    Attributes:
        profile: the :class:`~wna_helpers.config.Profile` of this build.
        models: every registry model, in the book's order.
        cnns: the models with conv layers.
        datasets: the dataset names.
        device: where models run.
        classes: dataset -> class names.
    """

    profile: Profile
    models: list[str]
    cnns: list[str]
    datasets: list[str]
    device: torch.device
    classes: dict[str, tuple[str, ...]] = field(repr=False)

    @property
    def num_classes(self) -> int:
        """Classes per dataset (the same for every dataset of the book)."""
        counts = {len(c) for c in self.classes.values()}
        if len(counts) != 1:
            raise ValueError(f"the datasets have different numbers of classes: {counts}")
        return counts.pop()

    @property
    def noise(self) -> Stimulus:
        """The noise of the book's main runs (the profile's ``noise``), as a stimulus object."""
        return as_stimulus(self.profile.noise)

    @property
    def noise_label(self) -> str:
        """:meth:`~wna_helpers.engine.stimuli.Stimulus.label` of :attr:`noise`, for titles and prose."""
        return self.noise.label()

    @property
    def chance(self) -> float:
        """Accuracy of guessing: ``1 / num_classes``."""
        return 1.0 / self.num_classes

    @property
    def max_entropy(self) -> float:
        """Entropy in bits of answers spread evenly over the classes: ``log2(num_classes)``."""
        return math.log2(self.num_classes)

    def show(self, *items: object) -> None:
        """Display a section of the chapter: :func:`show`."""
        show(*items)

    def subjects(self, models: Sequence[str] | None = None) -> dict[tuple[str, str], "Subject"]:
        """The trained models of this chapter, ``(model, dataset) -> Subject`` (datasets outer), trained or loaded
        with the chapter's profile (:func:`~wna_helpers.book.studies.subject`).

        Args:
            models: the architectures; default every model of the book (:attr:`models`).
        """
        from .studies import subject

        return {(a, d): subject(a, d, self.profile) for d in self.datasets for a in (models or self.models)}

    def header(self) -> str:
        """The Markdown line a chapter shows first: profile, seed and device."""
        return (f"Profile **{self.profile.name}** (environment variable `WNA_PROFILE`), seed {self.profile.seed}, "
                f"device `{self.device}`.")


def setup(profile: Profile | str | None = None, *, show: bool = True) -> Chapter:
    """Open a chapter: the profile (default ``$WNA_PROFILE``), the models and datasets, and, with
    ``show``, the profile line displayed as Markdown.

    Args:
        profile: a :class:`~wna_helpers.config.Profile`, its name, or None for ``$WNA_PROFILE``.
        show: display :meth:`Chapter.header` (in a notebook); default True.

    Returns:
        :class:`Chapter`.
    """
    prof = profile if isinstance(profile, Profile) else get_profile(profile)  # resolved here, once
    datasets = dataset_names()
    ch = Chapter(profile=prof, models=model_names(), cnns=list(CNN_NAMES), datasets=datasets,
                 device=default_device(), classes={d: class_names(d) for d in datasets})
    if show:
        from IPython.display import Markdown, display

        display(Markdown(ch.header()))
    return ch


def show(*items: object) -> None:
    """Display ``items`` in order in a notebook: a string as Markdown, a matplotlib figure as a figure (then
    closed, so the inline backend does not show it twice), a list or tuple item by item; None is skipped.

    What the chapters' report functions (:mod:`wna_helpers.book.reports`) return goes here.

    Raises:
        TypeError: an item of another type.
    """
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display
    from matplotlib.figure import Figure

    for item in items:
        if item is None:
            continue
        if isinstance(item, str):
            display(Markdown(item))
        elif isinstance(item, Figure):
            display(item)
            plt.close(item)
        elif isinstance(item, (list, tuple)):
            show(*item)
        else:
            raise TypeError(f"show() displays strings (Markdown), figures and lists of them; got {type(item).__name__}")
