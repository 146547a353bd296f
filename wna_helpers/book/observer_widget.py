"""The reader as the observer: a two-alternative task in JupyterLab (anywidget), keyboard or mouse.

:class:`ObserverWidget` shows the trials of an :class:`~wna_helpers.applications.observer_task.ObserverTask` one
at a time; the reader answers with F / J (or the arrow keys, or the buttons). Every answer goes to the task, which
appends it to its CSV at once, so a closed notebook loses nothing: the same path resumes the run. After every block
the widget shows the reader's classification image, its z-map and reliability, next to the network's CI on exactly
the same trials and how often the two agreed. The summary's element carries the numbers it draws
(``data-answered``, ``data-agreement``, ``data-observer-ci``, ``data-network-ci``: the combined noise CIs), so a
test in a real browser can check what is shown against the saved answers.

:func:`observer_task` sets up the book's task for a dataset: chapter 10's classes, base images and weight, and
the book's ``paper_cnn`` as the network.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from typing import Any

import anywidget
import torch
import traitlets
from matplotlib.figure import Figure

from ..applications.observer_task import BlockSummary, ObserverTask
from ..methods.trials import png_bytes
from .chapter import Chapter
from .observer_study import OBSERVER_CLASSES, study_observer
from .overview import train_class_means
from .plots.layout import symmetric_limit
from .studies import subject

__all__ = ["ObserverWidget", "observer_task", "summary_figure", "summary_html", "png_data_url", "KEYS"]

#: The keys of the two answers (A, B); the arrow keys work too.
KEYS = ("F", "J")

_ESM = """
function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "wna-observer";
  root.tabIndex = 0;
  root.setAttribute("data-lm-suppress-shortcuts", "true");
  root.style.cssText = "outline: none; padding: 8px; font-family: sans-serif; max-width: 100%;";
  const prompt = document.createElement("div");
  prompt.className = "wna-prompt";
  prompt.style.cssText = "font-size: 1.2em; margin-bottom: 6px;";
  const img = document.createElement("img");
  img.className = "wna-stimulus";
  img.style.cssText = "image-rendering: pixelated; display: block; border: 1px solid #888;";
  const buttons = document.createElement("div");
  buttons.style.cssText = "margin: 6px 0;";
  const status = document.createElement("div");
  status.className = "wna-status";
  const error = document.createElement("div");
  error.className = "wna-error";
  error.style.color = "#b00";
  const summary = document.createElement("div");
  summary.className = "wna-summary";
  let shownAt = performance.now();
  let pending = false;
  const labels = model.get("labels");
  const keys = model.get("answer_keys");
  const answer = (choice) => {
    const t = model.get("trial");
    if (pending || t >= model.get("n_trials")) return;
    pending = true;
    model.send({ type: "answer", trial: t, choice: choice, rt: (performance.now() - shownAt) / 1000 });
  };
  labels.forEach((label, i) => {
    const b = document.createElement("button");
    b.className = "wna-answer wna-answer-" + i;
    b.textContent = label + " (" + keys[i] + ")";
    b.style.cssText = "margin-right: 8px; padding: 4px 14px; font-size: 1em;";
    b.addEventListener("click", (e) => { e.stopPropagation(); root.focus(); answer(i); });
    buttons.appendChild(b);
  });
  const update = () => {
    const t = model.get("trial"), n = model.get("n_trials");
    root.dataset.trial = String(t);
    root.dataset.nTrials = String(n);
    prompt.textContent = model.get("prompt");
    img.width = model.get("size");
    img.height = model.get("size");
    if (t < n) {
      img.src = model.get("image");
      img.style.visibility = "visible";
      status.textContent = "Trial " + (t + 1) + " of " + n + ". Click here, then answer with " + keys[0] +
        " (" + labels[0] + ") or " + keys[1] + " (" + labels[1] + ").";
    } else {
      img.style.visibility = "hidden";
      status.textContent = "Done: all " + n + " trials are answered and saved.";
    }
    pending = false;
    shownAt = performance.now();
  };
  root.addEventListener("keydown", (e) => {
    const k = e.key.toLowerCase();
    let c = null;
    if (k === keys[0].toLowerCase() || k === "arrowleft") c = 0;
    else if (k === keys[1].toLowerCase() || k === "arrowright") c = 1;
    if (c === null) return;
    e.preventDefault();
    e.stopPropagation();
    answer(c);
  });
  root.addEventListener("click", () => root.focus());
  model.on("change:trial", update);
  model.on("change:image", update);
  model.on("change:summary", () => { summary.innerHTML = model.get("summary"); });
  model.on("change:error", () => { error.textContent = model.get("error"); pending = false; });
  root.append(prompt, img, buttons, status, error, summary);
  el.appendChild(root);
  update();
  summary.innerHTML = model.get("summary");
  error.textContent = model.get("error");
}
export default { render };
"""


def png_data_url(x: torch.Tensor, scale: int) -> str:
    """A ``(C, H, W)`` image in [0, 1] as an 8-bit PNG data URL (:func:`~wna_helpers.methods.trials.png_bytes`),
    each pixel ``scale x scale``: the same file :func:`~wna_helpers.methods.trials.export_trials` writes."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(x, scale)).decode()


def summary_figure(s: BlockSummary, class_names: tuple[str, str]) -> Figure:
    """The block summary as a figure: the observer's combined noise CI, its z-map with the Holm-significant
    pixels marked, and the network's CI on the same trials (when there is a network)."""
    a, b = class_names
    panels: list[tuple[str, torch.Tensor, str]] = [
        (f"your CI ({a} − {b})", s.observer.combined("noise"), "mean noise difference"),
        ("your z-map (dots: Holm-significant)", s.observer.combined_zmap("noise"), "z")]
    if s.network is not None:
        panels.append(("network's CI, same trials", s.network.combined("noise"), "mean noise difference"))
    fig = Figure(figsize=(3.1 * len(panels), 3.2), dpi=90)
    sig = s.observer.significant(s.alpha, "noise").any(0)
    for i, (title, m, label) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        img = m.reshape(-1, m.shape[-2], m.shape[-1]).mean(0).numpy()
        lim = symmetric_limit(img)
        im = ax.imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim)
        if not bool(torch.isfinite(torch.as_tensor(img)).any()):
            ax.text(0.5, 0.5, "not defined yet:\nno errors on one\nof the two classes", ha="center", va="center",
                    fontsize=8, transform=ax.transAxes)
        if i == 1:
            yy, xx = sig.reshape(-1, *sig.shape[-2:]).any(0).nonzero(as_tuple=True)
            ax.plot(xx.numpy(), yy.numpy(), "k.", markersize=2)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).set_label(label, fontsize=8)
    fig.suptitle(f"After {s.answered} trials", fontsize=10)
    fig.tight_layout()
    return fig


def _floats(x: torch.Tensor) -> list[float | None]:
    return [None if not math.isfinite(v) else round(v, 7) for v in x.flatten().tolist()]


def summary_html(s: BlockSummary, class_names: tuple[str, str]) -> str:
    """The block summary as HTML: a sentence of numbers, the figure, and the drawn CIs as data attributes."""
    fig = summary_figure(s, class_names)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    src = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    pct = lambda v: "–" if not math.isfinite(v) else f"{100 * v:.1f} %"   # noqa: E731
    rel = "not defined yet" if not math.isfinite(s.reliability) else f"{s.reliability:.2f}"
    text = (f"After {s.answered} trials you were right on {pct(s.accuracy)} of them"
            + (f", the network on {pct(s.network_accuracy)}; you and the network gave the same answer on "
               f"{pct(s.agreement)} of the trials" if s.network is not None else "")
            + f". Your CI's split-half reliability: {rel}; {s.significant} pixels differ from 0 (Holm, "
              f"family-wise error {s.alpha:g} per true class).")
    attrs = {"answered": s.answered, "agreement": "" if not math.isfinite(s.agreement) else f"{s.agreement:.6f}",
             "observer-ci": json.dumps(_floats(s.observer.combined("noise"))),
             "network-ci": json.dumps(_floats(s.network.combined("noise"))) if s.network is not None else ""}
    data = " ".join(f'data-{k}="{html.escape(str(v), quote=True)}"' for k, v in attrs.items())
    return (f'<div class="wna-block" {data}><p>{html.escape(text)}</p>'
            f'<img class="wna-summary-figure" src="{src}" style="max-width: 100%;" '
            f'alt="your classification image after {s.answered} trials"></div>')


class ObserverWidget(anywidget.AnyWidget):
    """The task in the notebook: the current trial, two answer buttons, the keys F / J, a summary per block.

    Args:
        task: the :class:`~wna_helpers.applications.observer_task.ObserverTask` (answers resume from its file).
        prompt: the question shown above the image; default "<A> or <B>?".
        scale: screen pixels per image pixel; default 8.

    Example:
        >>> a, b = torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4)
        >>> w = ObserverWidget(ObserverTask(a, b, weight=0.5, n_trials=2, block_size=2))
        >>> w.receive_answer(0, 1, 0.8), w.trial
        (False, 1)
    """

    _esm = _ESM
    image = traitlets.Unicode("").tag(sync=True)
    trial = traitlets.Int(0).tag(sync=True)
    n_trials = traitlets.Int(0).tag(sync=True)
    labels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    answer_keys = traitlets.List(traitlets.Unicode()).tag(sync=True)
    prompt = traitlets.Unicode("").tag(sync=True)
    size = traitlets.Int(224).tag(sync=True)
    summary = traitlets.Unicode("").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)

    def __init__(self, task: ObserverTask, *, prompt: str | None = None, scale: int = 8, **kwargs: Any) -> None:
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale!r}")
        a, b = task.class_names
        super().__init__(labels=list(task.class_names), answer_keys=list(KEYS), n_trials=task.n_trials,
                         prompt=prompt if prompt is not None else f"{a} or {b}?",
                         size=scale * int(task.trials.stimuli.shape[-1]), **kwargs)
        self.task, self.scale = task, scale
        self.on_msg(self._on_msg)
        self._show_next()
        if task.next_trial > 0:
            self.summary = summary_html(task.summary(), task.class_names)

    def _show_next(self) -> None:
        t = self.task.next_trial
        with self.hold_sync():
            self.image = png_data_url(self.task.stimulus(t), self.scale) if t < self.task.n_trials else ""
            self.trial = t

    def receive_answer(self, trial: int, choice: int, rt: float = math.nan) -> bool:
        """Record an answer as the front end does (the task saves it), show the next trial, and the summary at
        the end of a block. Returns whether a block ended."""
        ended = self.task.answer(trial, choice, rt)
        self._show_next()
        if ended:
            self.summary = summary_html(self.task.summary(), self.task.class_names)
        return ended

    def _on_msg(self, _widget: Any, content: dict[str, Any], _buffers: list[bytes]) -> None:
        if not isinstance(content, dict) or content.get("type") != "answer":
            return
        try:
            self.receive_answer(int(content["trial"]), int(content["choice"]), float(content.get("rt", math.nan)))
            self.error = ""
        except (KeyError, TypeError, ValueError) as err:
            self.error = str(err)
            self._show_next()


def observer_task(dataset: str, ch: Chapter, *, path: str | os.PathLike | None = None, n_trials: int = 400,
                  block_size: int = 50, weight: float | None = None, seed: int = 2026) -> ObserverTask:
    """Chapter 10's task for a reader: the dataset's two classes (:data:`OBSERVER_CLASSES`), their mean training
    images as the base images, uniform noise, and the book's ``paper_cnn`` as the network on the same trials.

    Args:
        dataset: ``"mnist"`` or ``"fashion_mnist"``.
        ch: the chapter (profile, class names, device).
        path: the answers CSV (resumed when it exists); default None (kept in memory).
        n_trials: default 400 (about seven minutes at a second a trial).
        block_size: default 50.
        weight: signal weight; default the weight chapter 10's sweep chose for its simulated observer (the one
            nearest 75 % correct; a person may need another: a block's accuracy says).
        seed: the trials' seed; default 2026 (another seed gives other trials).
    """
    if dataset not in OBSERVER_CLASSES:
        raise ValueError(f"dataset must be one of {sorted(OBSERVER_CLASSES)}, got {dataset!r}")
    a, b = OBSERVER_CLASSES[dataset]
    means = train_class_means(dataset).float()
    w = float(study_observer(dataset, ch.profile)["weight"]) if weight is None else weight
    names = (ch.classes[dataset][a], ch.classes[dataset][b])
    net = subject("paper_cnn", dataset, ch.profile, ch.device).model
    return ObserverTask(means[a:a + 1], means[b:b + 1], classes=(a, b), class_names=names, weight=w,
                        n_trials=n_trials, block_size=block_size, seed=seed, path=path, network=net)

