"""Interactive explorer of per-class mean activation maps (ipywidgets + matplotlib).

In JupyterLab the plot follows the dropdowns live; executed headless (a book build,
``pytest --nbmake``) the widget is built, draws its first view into its output area
and is returned, so nothing fails without a front end. A model or dataset whose statistics are
not cached yet is trained and run inside the widget, with its progress bars shown in the widget.
"""
from __future__ import annotations

from typing import Callable, Sequence

import matplotlib.pyplot as plt
import torch

from ..methods.activations import ActivationStatistics
from ..config import Profile
from ..zoo.data import class_names, dataset_names
from ..zoo.models import model_names
from .plots import dataset_label, plot_activation_pair
from .plots.charts import stimulus_label

__all__ = ["activation_explorer", "explorer_view", "StatsFn", "LogitsFn", "ActivationExplorer"]

#: ``(arch, dataset, stimulus) -> ActivationStatistics`` with stimulus ``"real"`` or ``"noise"``.
StatsFn = Callable[[str, str, str], ActivationStatistics]
#: ``(arch, dataset, layer) -> bool``: whether the layer's outputs are the model's logits.
LogitsFn = Callable[[str, str, str], bool]

#: Said under the controls: the kernel runs one thing at a time.
QUEUE_NOTE = ("<small>Changes made while other cells of the notebook run are applied when they finish: "
              "the kernel runs one thing at a time.</small>")

_MEAN = -1  # channel dropdown value meaning "mean over channels"


def explorer_view(real: ActivationStatistics, noise: ActivationStatistics, layer: str, cls: int,
                  channel: int | None) -> dict[str, torch.Tensor]:
    """The maps the explorer shows: class ``cls`` of ``layer`` over real images (by label) and noise
    (by predicted class), one channel or the mean over channels.

    Args:
        real: activation statistics over real test images, grouped by label.
        noise: activation statistics over noise, grouped by predicted class.
        layer: a layer present in both.
        cls: class index.
        channel: channel index, or None for the mean over channels (ignored for dense layers).

    Returns:
        panel title -> map ``(H, W)`` (conv layer) or vector ``(D,)`` (dense layer); a class the noise
        never reached gives a NaN map.

    Raises:
        KeyError: ``layer`` missing from either statistics.
        ValueError: class or channel out of range.
    """
    out: dict[str, torch.Tensor] = {}
    for label, st in (("real images (by label)", real), ("noise (by predicted class)", noise)):
        m = st.means[layer]
        if not 0 <= cls < m.shape[0]:
            raise ValueError(f"class {cls} out of range: {m.shape[0]} classes")
        x = m[cls]
        if x.dim() == 3:
            if channel is None:
                x = x.mean(0)
            elif not 0 <= channel < x.shape[0]:
                raise ValueError(f"channel {channel} out of range: layer {layer!r} has {x.shape[0]} channels")
            else:
                x = x[channel]
        out[f"{label}\nn={int(st.counts[cls]):,}"] = x
    return out


def activation_explorer(prof: Profile, *, models: Sequence[str] | None = None,
                        datasets: Sequence[str] | None = None, stats_fn: StatsFn | None = None,
                        logits_fn: LogitsFn | None = None):
    """An ipywidgets explorer: model, dataset, layer, class and channel dropdowns over a live plot.

    The plot shows the chosen class's mean activation of the chosen layer and channel over real
    test images (grouped by label) next to the same over the profile's noise (``profile.noise``, named
    in the plot's title by its label; grouped by the model's predicted class), on one colour scale.
    Statistics come from :func:`~wna_helpers.book.studies.study_activations` (cached on disk) and are loaded when a
    (model, dataset) is first selected; what is not cached yet (training, the noise pass) shows its progress
    bars inside the widget. A class that received no noise sample is said so in the status line. A logit
    layer is drawn as bars over the class names; another dense layer as an image of its units.

    Args:
        prof: the resolved profile (:func:`~wna_helpers.book.chapter.setup` gives it).
        models: model names offered; default :func:`~wna_helpers.zoo.models.model_names`.
        datasets: dataset names offered; default :func:`~wna_helpers.zoo.data.dataset_names`.
        stats_fn: where statistics come from (for tests); default ``study_activations`` with the
            profile, every conv layer (``fc1`` for dense models).
        logits_fn: which layers are logit layers (for tests); default: the model's last layer with weights.

    Returns:
        An ``ipywidgets.VBox`` (controls, a note, a status line, a progress area, the output area). Its
        ``explorer`` attribute holds the controls (``model``, ``dataset``, ``layer``, ``cls``, ``channel``), the
        ``output``, ``status``, ``progress`` and a ``refresh()`` function.
    """
    if stats_fn is None or logits_fn is None:
        from .studies import study_activations, subject

        def default_stats(arch: str, dataset: str, stimulus: str) -> ActivationStatistics:
            return study_activations(subject(arch, dataset, prof), stimulus=stimulus, progress=True)

        def default_logits(arch: str, dataset: str, layer: str) -> bool:
            model = subject(arch, dataset, prof).model
            weighted = [n for n, m in model.named_modules() if isinstance(getattr(m, "weight", None), torch.Tensor)]
            return bool(weighted) and weighted[-1] == layer

        stats_fn = stats_fn or default_stats
        logits_fn = logits_fn or default_logits
    return ActivationExplorer(prof, list(models or model_names()), list(datasets or dataset_names()), stats_fn,
                              logits_fn).box


class ActivationExplorer:
    """The explorer's controls, its state and its callbacks (:func:`activation_explorer` builds one)."""

    def __init__(self, prof: Profile, models: list[str], datasets: list[str], stats_fn: StatsFn,
                 logits_fn: LogitsFn) -> None:
        import ipywidgets as W

        self.prof, self.stats_fn, self.logits_fn = prof, stats_fn, logits_fn
        self.memo: dict[tuple[str, str, str], ActivationStatistics] = {}
        self.busy = False
        style = {"description_width": "initial"}
        self.model = W.Dropdown(options=models, value=models[0], description="model", style=style)
        self.dataset = W.Dropdown(options=[(dataset_label(d), d) for d in datasets], value=datasets[0],
                                  description="dataset", style=style)
        self.layer = W.Dropdown(description="layer", style=style)
        self.cls = W.Dropdown(description="class", style=style)
        self.channel = W.Dropdown(description="channel", style=style)
        self.status = W.HTML()
        self.progress = W.Output()
        self.output = W.Output(layout=W.Layout(min_height="320px"))
        self.model.observe(self.refresh, names="value")
        self.dataset.observe(self.refresh, names="value")
        self.layer.observe(lambda change: self.redraw(change, new_layer=True), names="value")
        self.cls.observe(self.redraw, names="value")
        self.channel.observe(self.redraw, names="value")
        self.refresh()
        self.box = W.VBox([W.HBox([self.model, self.dataset, self.layer]), W.HBox([self.cls, self.channel]),
                           W.HTML(QUEUE_NOTE), self.status, self.progress, self.output])
        self.box.explorer = {"model": self.model, "dataset": self.dataset, "layer": self.layer,  # type: ignore[attr-defined]
                             "cls": self.cls, "channel": self.channel, "output": self.output, "status": self.status,
                             "progress": self.progress, "refresh": self.refresh}

    def stats(self, arch: str, dataset: str, stimulus: str) -> ActivationStatistics:
        """The statistics, computed (with progress bars in the widget) or loaded once per session."""
        key = (arch, dataset, stimulus)
        if key not in self.memo:
            with self.progress:
                self.memo[key] = self.stats_fn(arch, dataset, stimulus)
            self.progress.clear_output()
        return self.memo[key]

    def set_options(self) -> None:
        """Layer, class and channel options for the chosen model and dataset."""
        real = self.stats(self.model.value, self.dataset.value, "real")
        noise = self.stats(self.model.value, self.dataset.value, "noise")
        layers = [name for name in real.means if name in noise.means]
        old_layer, old_cls = self.layer.value, self.cls.value
        self.layer.options = layers
        self.layer.value = old_layer if old_layer in layers else layers[0]
        names = class_names(self.dataset.value)
        k = int(real.counts.numel())
        self.cls.options = [(f"{names[c]} (noise n={int(noise.counts[c]):,})", c) for c in range(k)]
        # keep the chosen class where the noise reaches it in the new model or dataset
        keep = old_cls is not None and old_cls < k and int(noise.counts[old_cls]) > 0
        self.cls.value = old_cls if keep else int(noise.counts.argmax())
        self.set_channels()

    def set_channels(self) -> None:
        m = self.stats(self.model.value, self.dataset.value, "real").means[self.layer.value]
        old = self.channel.value
        if m.dim() == 4:
            opts = [("mean over channels", _MEAN)] + [(str(c), c) for c in range(m.shape[1])]
        else:
            opts = [("(dense layer: all units)", _MEAN)]
        self.channel.options = opts
        self.channel.value = old if old in [v for _, v in opts] else _MEAN

    def draw(self) -> str:
        """Draw the chosen view; returns a note for the status line ("" when there is nothing to say)."""
        arch, dataset, layer = self.model.value, self.dataset.value, self.layer.value
        cls, ch = int(self.cls.value), self.channel.value
        real, noise = self.stats(arch, dataset, "real"), self.stats(arch, dataset, "noise")
        maps = explorer_view(real, noise, layer, cls, None if ch == _MEAN else int(ch))
        dense = real.means[layer].dim() == 2
        logits = dense and self.logits_fn(arch, dataset, layer)
        names = class_names(dataset)
        what = "logits" if logits else "all units" if dense else ("mean over channels" if ch == _MEAN else f"channel {ch}")
        title = (f"{arch} on {dataset_label(dataset)}, layer {layer}, {what}, class {names[cls]}\n"
                 f"real: {real.n_samples:,} test images; noise: {noise.n_samples:,} samples of "
                 f"{stimulus_label(noise.stimulus)} ({self.prof.name} profile)")
        with self.output:
            self.output.clear_output(wait=True)
            fig = plot_activation_pair(maps, title, colorbar_label="mean logit" if logits else "mean activation (pre-ReLU)",
                                       unit_names=list(names) if logits else None)
            plt.show()
            plt.close(fig)
        if int(noise.counts[cls]) == 0:
            return (f"<b>{names[cls]}</b> received no noise sample from {arch} on "
                    f"{dataset_label(dataset)} (n = {noise.n_samples:,}): there is no noise map for it.")
        return ""

    def refresh(self, *_: object) -> None:
        """A new model or dataset: load its statistics (say so while loading), then redraw."""
        if self.busy:
            return
        self.busy = True
        cached = all((self.model.value, self.dataset.value, s) in self.memo for s in ("real", "noise"))
        if not cached:
            self.status.value = (f"<i>loading {self.model.value} on {dataset_label(self.dataset.value)}: the first "
                                 f"time it trains the model and runs the noise (progress below)...</i>")
        try:
            self.set_options()
            self.status.value = self.draw()
        except Exception as exc:  # keep the widget alive; say what went wrong
            self.status.value = f"<b>error:</b> {type(exc).__name__}: {exc}"
        finally:
            self.busy = False

    def redraw(self, change: object = None, new_layer: bool = False) -> None:
        """Another layer, class or channel of the loaded statistics."""
        if self.busy:
            return
        self.busy = True
        try:
            if new_layer:
                self.set_channels()
            self.status.value = self.draw()
        except Exception as exc:
            self.status.value = f"<b>error:</b> {type(exc).__name__}: {exc}"
        finally:
            self.busy = False
