"""The paper's recipes for using classification images: min-max scaling, its templates and the
template classifier, feeding CIs back, biasing a model along a CI, and the colour-map round trip its
code put CIs through (PNG files read back)."""
from __future__ import annotations

import torch
from torch import nn

from ..engine.kernel import model_device

__all__ = ["minmax_scale", "paper_templates", "template_classify", "feed_back", "bias_curve", "colormap_roundtrip",
           "ROUNDTRIP_CHANNELS"]


def minmax_scale(images: torch.Tensor) -> torch.Tensor:
    """Scale each image to [0, 1]: ``(x - min) / (max - min)`` over all its pixels.

    A constant image maps to zeros; an image with a NaN pixel (e.g. the CI of a class without
    samples) comes back all NaN.

    Args:
        images: ``(N, *shape)``, at least 2-D; integer images are converted to float32.

    Returns:
        ``(N, *shape)``, the input's floating dtype (float32 for integer input), on its device.

    Raises:
        ValueError: if ``images`` is not a tensor with at least 2 dimensions, or holds ±inf.

    Example:
        >>> import torch
        >>> from wna_helpers.paper import minmax_scale
        >>> minmax_scale(torch.tensor([[2.0, 4.0, 3.0], [5.0, 5.0, 5.0]]))
        tensor([[0.0000, 1.0000, 0.5000],
                [0.0000, 0.0000, 0.0000]])
    """
    if not isinstance(images, torch.Tensor) or images.dim() < 2:
        raise ValueError("images must be a tensor of shape (N, *shape) with at least 2 dimensions; "
                         f"got {type(images).__name__} {tuple(getattr(images, 'shape', ()))}")
    x = images if images.is_floating_point() else images.float()
    if torch.isinf(x).any():
        raise ValueError("images hold ±inf; only finite values (or NaN for a missing image) are allowed")
    flat = x.reshape(len(x), -1)
    lo = flat.amin(1, keepdim=True)  # NaN propagates: an image with a NaN stays NaN
    span = flat.amax(1, keepdim=True) - lo
    out = (flat - lo) / torch.where(span > 0, span, torch.ones_like(span))
    return out.view_as(x)


def paper_templates(ci_images: torch.Tensor, *, rms_images: torch.Tensor | None = None) -> torch.Tensor:
    """The paper's templates: each class image min-max scaled to [0, 1], then L2-normalised.

    PAPER.md ("CIs as templates"): the template of class c is ``sqrt(mean(noise^2))`` of the
    (Gabor) noise the model called c, an RMS image (``Gabor-PCA.ipynb`` cell 20; elsewhere the
    plain mean), min-max scaled to [0, 1] and L2-normalised. Images are L2-normalised without mean
    subtraction, and the prediction is the argmax of the dot product
    (:func:`wna_helpers.methods.summaries.template_classify` with ``center=False`` on the classes that have a
    template; :func:`wna_helpers.book.noise_study.template_accuracy` does this for a
    :class:`~wna_helpers.methods.ci.ClassificationImages`).

    Args:
        ci_images: ``(K, *shape)`` classification images (the per-class means); NaN rows are
            classes without samples.
        rms_images: ``(K, *shape)`` per-class RMS images, used instead of ``ci_images`` when
            given (the recipe of ``Gabor-PCA.ipynb``); from a
            :class:`~wna_helpers.methods.ci.ClassificationImages` ``ci``:
            ``(ci.sumsq / ci.counts.view(-1, 1, 1, 1)).sqrt()``. Default None (use the means).

    Returns:
        float64 ``(K, *shape)``, every finite row of unit L2 norm; NaN rows stay NaN; a constant
        class image becomes an all-zero template.

    Raises:
        ValueError: if the inputs are not ``(K, *shape)`` tensors of the same shape.

    Example:
        >>> import torch
        >>> from wna_helpers.paper import paper_templates
        >>> t = paper_templates(torch.rand(10, 1, 28, 28))
        >>> t.shape, round(float(t[0].norm()), 6)
        (torch.Size([10, 1, 28, 28]), 1.0)
    """
    if not isinstance(ci_images, torch.Tensor) or ci_images.dim() < 2:
        raise ValueError("ci_images must be a tensor (K, *shape) with at least 2 dimensions")
    src = ci_images
    if rms_images is not None:
        if not isinstance(rms_images, torch.Tensor) or rms_images.shape != ci_images.shape:
            raise ValueError(f"rms_images must have the shape of ci_images {tuple(ci_images.shape)}; got "
                             f"{tuple(getattr(rms_images, 'shape', ()))}")
        src = rms_images
    x = minmax_scale(src.double()).reshape(len(src), -1)
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-300)  # zeros stay zeros, NaN stays NaN
    return x.view(src.shape)


def template_classify(images: torch.Tensor, templates: torch.Tensor, *, center: bool = False,
                      batch_size: int = 10_000) -> torch.Tensor:
    """Classify ``images`` by the most similar template (the paper's CI classifier).

    Predicts ``argmax_c <y/|y|, T_c/|T_c|>`` for every image ``y``.

    Args:
        images: ``(N, *shape)``.
        templates: ``(K, *shape)``, e.g. classification images or class means.
        center: subtract each vector's own mean first (a correlation instead of a cosine);
            default False (the paper's normalised dot product).
        batch_size: images per matrix product; default 10,000.

    Returns:
        int64 ``(N,)`` predicted classes.
    """
    t = templates.reshape(len(templates), -1).double()
    if torch.isnan(t).any():
        raise ValueError("a template is NaN (a class with no samples); drop it or collect more samples")
    if center:
        t = t - t.mean(1, keepdim=True)
    t = t / t.norm(dim=1, keepdim=True)
    out = []
    # The image's own scaling leaves the argmax over c alone: dividing y by |y| > 0 scales its row of scores,
    # and centring y changes y . T_c by mean(y) * sum(T_c), which is 0 for a centred template (a zero image
    # scores 0 everywhere either way). So y enters as it is: half the time of normalising every image.
    for i in range(0, len(images), batch_size):  # batches of images, not a loop per sample
        y = images[i:i + batch_size].reshape(-1, t.shape[1]).double()
        out.append((y @ t.T).argmax(1))
    return torch.cat(out)


@torch.no_grad()
def feed_back(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The model's answer on each of ``images`` ``(K, *shape)`` (e.g. its own CIs), int64 ``(K,)``.

    NaN images (classes without samples) get the answer -1. The model's state is restored.
    """
    device = model_device(model)
    was = model.training
    model.eval()
    try:
        bad = torch.isnan(images.reshape(len(images), -1)).any(1)
        x = torch.nan_to_num(images.float()).to(device)
        pred = model(x).argmax(1).cpu()
    finally:
        model.train(was)
    pred[bad] = -1
    return pred


@torch.no_grad()
def bias_curve(model: nn.Module, inputs: torch.Tensor, direction: torch.Tensor, target: int,
               gammas: torch.Tensor | list[float], *, batch_size: int = 2048,
               clip: tuple[float, float] | None = None) -> torch.Tensor:
    """Share of ``inputs + gamma * direction`` that the model assigns to ``target``, per gamma.

    Args:
        model: classifier; its state is restored.
        inputs: ``(N, *shape)`` test images or noise.
        direction: ``shape``: e.g. the classification image of ``target`` (mean-centred or not).
        target: class index.
        gammas: the weights to try.
        batch_size: default 2,048.
        clip: ``(low, high)``: clamp every biased input to the data's range (e.g. ``(0, 1)``) before the model
            sees it; default None (unclipped, as the paper did).

    Returns:
        float64 ``(len(gammas),)``.
    """
    device = model_device(model)
    was = model.training
    model.eval()
    d = direction.float().to(device)
    out = []
    try:
        for g in gammas:
            hits = 0
            for i in range(0, len(inputs), batch_size):
                x = inputs[i:i + batch_size].float().to(device) + float(g) * d
                if clip is not None:
                    x = x.clamp(float(clip[0]), float(clip[1]))
                hits += int((model(x).argmax(1) == target).sum())
            out.append(hits / len(inputs))
    finally:
        model.train(was)
    return torch.tensor(out, dtype=torch.float64)


#: How the paper's code read a colour-mapped CI back from its PNG: the mean over the four RGBA channels (its
#: feed-back and gamma-curve cells; matplotlib writes RGBA, so alpha = 1 enters the mean), the mean over RGB, or
#: the red channel alone (its attack cell, ``pattern[..., 0]``, which is not monotone in viridis).
ROUNDTRIP_CHANNELS = ("rgba", "rgb", "red")


def colormap_roundtrip(images: torch.Tensor, colormap: str = "viridis", *, channels: str = "rgba") -> torch.Tensor:
    """What the paper's code fed back and added to images instead of a CI: the CI min-max scaled,
    coloured with ``colormap`` (saved as an RGBA PNG) and read back as ``channels``
    (:data:`ROUNDTRIP_CHANNELS`; default ``"rgba"``, the mean over R, G, B and alpha = 1, as its feed-back and
    gamma-curve cells read it). For viridis the RGB mean maps [0, 1] onto about [0.20, 0.68], not linearly;
    the red channel is not even monotone. NaN images stay NaN.

    Returns:
        float64 of the shape of ``images`` (one channel per image channel).

    Raises:
        ValueError: an unknown ``channels``.
    """
    import matplotlib

    if channels not in ROUNDTRIP_CHANNELS:
        raise ValueError(f"channels must be one of {list(ROUNDTRIP_CHANNELS)}, got {channels!r}")
    x = minmax_scale(images.double())
    rgba = matplotlib.colormaps[colormap](torch.nan_to_num(x).numpy())
    read = {"rgba": rgba.mean(-1), "rgb": rgba[..., :3].mean(-1), "red": rgba[..., 0]}[channels]
    out = torch.from_numpy(read).to(torch.float64)
    out[torch.isnan(x)] = float("nan")
    return out
