"""Interactive explorer of per-class mean activation maps (ipywidgets + matplotlib).

In JupyterLab the plot follows the dropdowns live; executed headless (a book build,
``pytest --nbmake``) the widget is built, draws its first view into its output area
and is returned, so nothing fails without a front end.
"""
from __future__ import annotations

from typing import Callable, Sequence

import matplotlib.pyplot as plt
import torch

from ..methods.activations import ActivationStatistics
from ..config import Profile, get_profile
from ..zoo.data import class_names, dataset_names
from ..zoo.models import model_names
from .plots import dataset_label, plot_activation_pair
from .plots.charts import stimulus_label

__all__ = ["activation_explorer", "explorer_view", "StatsFn"]

#: ``(arch, dataset, stimulus) -> ActivationStatistics`` with stimulus ``"real"`` or ``"noise"``.
StatsFn = Callable[[str, str, str], ActivationStatistics]

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
                        datasets: Sequence[str] | None = None, stats_fn: StatsFn | None = None):
    """An ipywidgets explorer: model, dataset, layer, class and channel dropdowns over a live plot.

    The plot shows the chosen class's mean activation of the chosen layer and channel over real
    test images (grouped by label) next to the same over the profile's noise (``profile.noise``, named
    in the plot's title by its label; grouped by the model's predicted class), on one colour scale.
    Statistics come from :func:`~wna_helpers.book.studies.study_activations` (cached on disk) and are loaded when a
    (model, dataset) is first selected, so the explorer shows its first view after loading one
    model. A class that received no noise sample is said so in the status line.

    Args:
        prof: the resolved profile (:func:`~wna_helpers.book.chapter.setup` gives it).
        models: model names offered; default :func:`~wna_helpers.zoo.models.model_names`.
        datasets: dataset names offered; default :func:`~wna_helpers.zoo.data.dataset_names`.
        stats_fn: where statistics come from (for tests); default ``study_activations`` with the
            profile, every conv layer (``fc1`` for dense models).

    Returns:
        An ``ipywidgets.VBox`` (controls, a status line, the output area). Its ``explorer``
        attribute holds the controls (``model``, ``dataset``, ``layer``, ``cls``, ``channel``), the
        ``output``, ``status`` and a ``refresh()`` function.
    """
    import ipywidgets as W

    if stats_fn is None:
        from .studies import study_activations, subject

        def stats_fn(arch: str, dataset: str, stimulus: str) -> ActivationStatistics:
            return study_activations(subject(arch, dataset, prof), stimulus=stimulus, progress=False)

    models = list(models or model_names())
    datasets = list(datasets or dataset_names())
    memo: dict[tuple[str, str, str], ActivationStatistics] = {}

    def stats(arch: str, dataset: str, stimulus: str) -> ActivationStatistics:
        key = (arch, dataset, stimulus)
        if key not in memo:
            memo[key] = stats_fn(arch, dataset, stimulus)
        return memo[key]

    style = {"description_width": "initial"}
    model_dd = W.Dropdown(options=models, value=models[0], description="model", style=style)
    data_dd = W.Dropdown(options=[(dataset_label(d), d) for d in datasets], value=datasets[0],
                         description="dataset", style=style)
    layer_dd = W.Dropdown(description="layer", style=style)
    class_dd = W.Dropdown(description="class", style=style)
    chan_dd = W.Dropdown(description="channel", style=style)
    status = W.HTML()
    output = W.Output(layout=W.Layout(min_height="320px"))
    busy = {"on": False}

    def set_options() -> None:
        """Layer, class and channel options for the chosen model and dataset."""
        real = stats(model_dd.value, data_dd.value, "real")
        noise = stats(model_dd.value, data_dd.value, "noise")
        layers = [name for name in real.means if name in noise.means]
        old_layer, old_cls = layer_dd.value, class_dd.value
        layer_dd.options = layers
        layer_dd.value = old_layer if old_layer in layers else layers[0]
        names = class_names(data_dd.value)
        k = int(real.counts.numel())
        class_dd.options = [(f"{names[c]} (noise n={int(noise.counts[c]):,})", c) for c in range(k)]
        # keep the chosen class where the noise reaches it in the new model or dataset
        keep = old_cls is not None and old_cls < k and int(noise.counts[old_cls]) > 0
        class_dd.value = old_cls if keep else int(noise.counts.argmax())
        set_channels()

    def set_channels() -> None:
        m = stats(model_dd.value, data_dd.value, "real").means[layer_dd.value]
        old = chan_dd.value
        if m.dim() == 4:
            opts = [("mean over channels", _MEAN)] + [(str(c), c) for c in range(m.shape[1])]
        else:
            opts = [("(dense layer: all units)", _MEAN)]
        chan_dd.options = opts
        chan_dd.value = old if old in [v for _, v in opts] else _MEAN

    def draw() -> str:
        """Draw the chosen view; returns a note for the status line ("" when there is nothing to say)."""
        arch, dataset, layer = model_dd.value, data_dd.value, layer_dd.value
        cls, ch = int(class_dd.value), chan_dd.value
        real, noise = stats(arch, dataset, "real"), stats(arch, dataset, "noise")
        maps = explorer_view(real, noise, layer, cls, None if ch == _MEAN else int(ch))
        dense = real.means[layer].dim() == 2
        what = "all units" if dense else ("mean over channels" if ch == _MEAN else f"channel {ch}")
        title = (f"{arch} on {dataset_label(dataset)}, layer {layer}, {what}, class {class_names(dataset)[cls]}\n"
                 f"real: {real.n_samples:,} test images; noise: {noise.n_samples:,} samples of "
                 f"{stimulus_label(noise.stimulus)} ({prof.name} profile)")
        with output:
            output.clear_output(wait=True)
            fig = plot_activation_pair(maps, title, colorbar_label="mean activation (pre-ReLU)")
            plt.show()
            plt.close(fig)
        if int(noise.counts[cls]) == 0:
            return (f"<b>{class_names(dataset)[cls]}</b> received no noise sample from {arch} on "
                    f"{dataset_label(dataset)} (n = {noise.n_samples:,}): there is no noise map for it.")
        return ""

    def refresh(*_: object) -> None:
        if busy["on"]:
            return
        busy["on"] = True
        status.value = "<i>computing or loading activation statistics...</i>"
        try:
            set_options()
            status.value = draw()
        except Exception as exc:  # keep the widget alive; say what went wrong
            status.value = f"<b>error:</b> {type(exc).__name__}: {exc}"
        finally:
            busy["on"] = False

    def redraw(change: object = None, new_layer: bool = False) -> None:
        if busy["on"]:
            return
        busy["on"] = True
        try:
            if new_layer:
                set_channels()
            status.value = draw()
        except Exception as exc:
            status.value = f"<b>error:</b> {type(exc).__name__}: {exc}"
        finally:
            busy["on"] = False

    model_dd.observe(refresh, names="value")
    data_dd.observe(refresh, names="value")
    layer_dd.observe(lambda change: redraw(change, new_layer=True), names="value")
    class_dd.observe(redraw, names="value")
    chan_dd.observe(redraw, names="value")
    refresh()
    box = W.VBox([W.HBox([model_dd, data_dd, layer_dd]), W.HBox([class_dd, chan_dd]), status, output])
    box.explorer = {"model": model_dd, "dataset": data_dd, "layer": layer_dd, "cls": class_dd,  # type: ignore[attr-defined]
                    "channel": chan_dd, "output": output, "status": status, "refresh": refresh}
    return box
