"""The trojan-detection study of chapter 9: families of clean and trojaned ``paper_cnn`` models, cached,
and whether white noise (or the paper's input gradients) finds the trigger.

Every model of a family is trained with the profile's batch size and learning rate for
``profile.trojan_epochs[dataset]`` epochs from its own seed. Trojaned model ``i`` and clean model ``i``
share that seed (same initial weights, same shuffling), so they differ by the poisoned images only.
Model 0 carries the paper's trigger position (rows 1-6, columns 21-26); the others a random position.
A separate clean *reference* model (the defender's own, trained the same way) is what every model is
compared with (:func:`~wna_helpers.methods.ci_compare.compare_classification_images`). A third family,
*relabelled* model ``i`` (the same seed), is trained on the same source images relabelled as the target without
the trigger: it shifts the class prior as the poisoning does, so a score that separates trojaned models from these
finds the trigger, not merely more target labels.

The scores that decide the verdict, their direction (higher: trojaned) and the rule are fixed here, before the
study runs (:data:`DECLARED`); every other score is exploratory.

Example:
    >>> import wna_helpers as wna
    >>> fam = wna.trojan_study.study_trojan_family("mnist", "quick")  # doctest: +SKIP
    >>> fam["auc"]["uniform_vs_reference_window"]  # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from ..methods.ci import classification_images
from ..methods.ci_compare import compare_classification_images
from ..config import Profile, cache_root, default_device
from ..zoo.data import load_dataset
from ..engine.fingerprint import state_digest
from ..zoo.models import build_model
from .noise_study import noise_kind
from ..engine.options import RunOptions
from .results_cache import cached
from ..zoo.training import CACHE_FORMAT, read_checkpoint, train_recipe, write_checkpoint
from ..applications.detection import detection_test
from ..applications.trojan import (mean_input_gradient, scan_score, stamp_trigger, trigger_score, trojan_dataset,
                                   trojan_metrics, window_mask)
from ..methods.ci_compare import holm_adjust

__all__ = ["TROJAN_PAIRS", "PAPER_POSITION", "TRIGGER_SIZE", "POISONED", "trigger_positions", "trojan_checkpoint",
           "trojan_model", "study_trojan_family", "SCORES", "DECLARED", "FAMILIES", "CONTROLS", "detection_tests"]

#: (source, target) of the poisoning per dataset: MNIST 8 -> 9 (the paper's); Fashion-MNIST bag -> ankle boot
#: (the same indices, two classes with nothing in common, so the planted rule cannot be learnt from the data).
TROJAN_PAIRS: dict[str, tuple[int, int]] = {"mnist": (8, 9), "fashion_mnist": (8, 9)}
#: The paper's trigger: top-left corner of its 6x6 window (rows 1-6, columns 21-26).
PAPER_POSITION: tuple[int, int] = (1, 21)
TRIGGER_SIZE = 6
#: Training images of the source class stamped and relabelled (the paper's 2,000).
POISONED = 2000
#: The detection scores, in the order of the book's table.
SCORES: tuple[str, ...] = tuple(f"{kind}_{score}" for kind in ("uniform", "gabor")
                                 for score in ("target_share", "vs_reference_window", "vs_reference_scan",
                                               "logit_window", "logit_scan", "self_window")) + tuple(
    f"gradient{variant}_{score}" for variant in ("", "_stamped", "_logit") for score in ("window", "scan"))
#: The white-noise scores that decide the verdict, declared before the study runs: the share of the noise called
#: the target and the CI's difference from the reference's in the trigger window and by the scan, under uniform and
#: Gabor noise; higher means trojaned. Holm's method corrects across them. The others are exploratory.
DECLARED: tuple[str, ...] = tuple(f"{kind}_{score}" for score in ("target_share", "vs_reference_window",
                                                                  "vs_reference_scan") for kind in ("uniform", "gabor"))
#: The families of models: clean, trojaned, and relabelled without the trigger.
FAMILIES: tuple[str, ...] = ("clean", "trojaned", "relabelled")
#: The families the trojaned models are tested against.
CONTROLS: tuple[str, ...] = ("clean", "relabelled")


def trigger_positions(dataset: str, prof: Profile) -> list[tuple[int, int]]:
    """The trigger position (top-left row, column) of each trojaned model: the paper's first, then random
    positions (seeded by the profile's seed and the dataset) anywhere the 6x6 trigger fits in 28x28."""
    gen = torch.Generator().manual_seed(int(hashlib.sha256(f"{prof.seed}/{dataset}".encode()).hexdigest()[:8], 16))
    rest = torch.randint(0, 28 - TRIGGER_SIZE + 1, (max(prof.trojan_models - 1, 0), 2), generator=gen)
    return [PAPER_POSITION] + [(int(r), int(c)) for r, c in rest.tolist()]


def _seed(prof: Profile, index: int) -> int:
    """Seed of model ``index`` of a family; the reference model is ``index = -1``."""
    return prof.seed + 1000 + index


def trojan_checkpoint(dataset: str, prof: Profile, *, index: int = 0, trojaned: bool = True,
                      relabelled: bool = False) -> tuple[dict[str, object], Path]:
    """The training recipe of model ``index`` of the family and where :func:`trojan_model` keeps it.

    The recipe holds every training setting and the poisoning (pair, count, position, trigger); the file is
    named by its digest, so another setting is another model. Arguments as :func:`trojan_model`'s.

    Raises:
        ValueError: an index outside the family, ``trojaned`` or ``relabelled`` with the reference index, or both.
    """
    if not -1 <= index < prof.trojan_models:
        raise ValueError(f"index must be -1 (reference) or 0..{prof.trojan_models - 1}, got {index}")
    if index == -1 and (trojaned or relabelled):
        raise ValueError("the reference model (index -1) is clean: pass trojaned=False and relabelled=False")
    if trojaned and relabelled:
        raise ValueError("a model is trojaned (trigger and relabelling) or relabelled (no trigger), not both")
    source, target = TROJAN_PAIRS[dataset]
    position = trigger_positions(dataset, prof)[index] if trojaned else None
    labels = load_dataset(dataset, "train", limit=prof.train_subset).labels
    count = min(POISONED, int((labels == source).sum()) // 3)  # a third of the source class at most
    recipe = {"format": CACHE_FORMAT, "arch": "paper_cnn", "dataset": dataset, "epochs": prof.trojan_epochs[dataset],
              "seed": _seed(prof, index), "lr": prof.lr, "batch_size": prof.batch_size,
              "train_subset": prof.train_subset,
              "trojan": None if position is None else {"source": source, "target": target, "count": count,
                                                       "position": list(position), "trigger": "paper6"}}
    if relabelled:
        recipe["trojan"] = {"source": source, "target": target, "count": count, "position": None, "trigger": None,
                            "relabelled": True}
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    return recipe, cache_root() / "models" / f"trojan-paper_cnn-{dataset}-{digest}.pt"


def trojan_model(dataset: str, prof: Profile, *, index: int = 0, trojaned: bool = True, relabelled: bool = False,
                 device: torch.device | str | None = None, progress: bool = False) -> tuple[nn.Module, dict]:
    """Model ``index`` of the family (``index=-1``: the clean reference), trained once and cached.

    The checkpoint's recipe holds every training setting and the poisoning (pair, count, position,
    trigger), so another setting trains another model. Writes are atomic.

    Args:
        dataset: ``"mnist"`` or ``"fashion_mnist"``.
        prof: the resolved profile.
        index: 0 .. ``profile.trojan_models - 1``, or -1 for the reference (never trojaned).
        trojaned: train on the poisoned data (position :func:`trigger_positions` ``[index]``).
        relabelled: train on the same source images relabelled as the target, without the trigger (the control
            family; ``trojaned`` must be False).
        device: default CUDA when present.
        progress: show the training bar; default False.

    Returns:
        ``(model, meta)``: meta holds the recipe, ``test_accuracy``, ``weights_sha256`` and, for a
        trojaned model, ``position``.

    Raises:
        ValueError: an index outside the family, ``trojaned`` or ``relabelled`` with the reference index, or both.
    """
    recipe, path = trojan_checkpoint(dataset, prof, index=index, trojaned=trojaned, relabelled=relabelled)
    dev = torch.device(device) if device is not None else default_device()
    poison: dict | None = recipe["trojan"]  # type: ignore[assignment]  # None: clean; position None: relabelled only
    position = tuple(poison["position"]) if poison and poison["position"] is not None else None
    recipe_prof = prof.updated(seed=int(recipe["seed"]), epochs={dataset: prof.trojan_epochs[dataset]},
                               lr_overrides={})
    model = build_model("paper_cnn", seed=recipe_prof.seed)
    meta, _ = read_checkpoint(path, recipe, model)
    if meta is None:
        model = build_model("paper_cnn", seed=recipe_prof.seed)
        data = load_dataset(dataset, "train", limit=prof.train_subset)
        if poison:
            data = trojan_dataset(data, source=poison["source"], target=poison["target"], count=poison["count"],
                                  **({"position": position} if position else {"stamp": False}))
        _, meta = train_recipe(model, "paper_cnn", dataset, recipe_prof, dev, progress, train_data=data)
        meta = {**meta, **recipe}
        write_checkpoint(path, model.state_dict(), meta)
    model = model.to(dev).eval()
    return model, {**meta, "weights_sha256": state_digest(model), "position": position}


def _target_map(maps: torch.Tensor, target: int) -> torch.Tensor:
    """The target class's map as (H, W) (channel mean)."""
    return maps[target].reshape(-1, *maps.shape[-2:]).mean(0)


def _standardised(m: torch.Tensor) -> torch.Tensor:
    return (m - m.mean()) / m.std().clamp_min(1e-12)


def _scan(m: torch.Tensor) -> float:
    """:func:`~wna_helpers.applications.trojan.scan_score` of a map, NaN for a map without a finite pixel."""
    return float(scan_score(m, TRIGGER_SIZE).score) if bool(torch.isfinite(m).any()) else float("nan")


def _gradients(model: nn.Module, dataset: str, prof: Profile, position: tuple[int, int]) -> dict[str, torch.Tensor]:
    """The input-gradient baselines, standardised over pixels, target class: ``gradient`` (the target's softmax over
    the correctly classified target images among 2,000 test images), ``gradient_stamped`` (the paper's: the
    target's softmax over the first 500 training images of the source stamped with the trigger at ``position``,
    every one counted, so that a clean model has a map too) and ``gradient_logit`` (the target's logit over the
    clean source images among 2,000 test images: what a defender without the trigger can compute)."""
    source, target = TROJAN_PAIRS[dataset]
    test = load_dataset(dataset, "test")
    train = load_dataset(dataset, "train", limit=prof.train_subset)
    stamped = stamp_trigger(train.images[train.labels == source][:500], position=position)
    clean_source = test.images[:2000][test.labels[:2000] == source]
    maps = {"gradient": mean_input_gradient(model, test.images[:2000], labels=test.labels[:2000],
                                            output="probability"),
            "gradient_stamped": mean_input_gradient(model, stamped, labels=torch.full((len(stamped),), target),
                                                    output="probability", correct_only=False),
            "gradient_logit": mean_input_gradient(model, clean_source, output="logit")}
    return {k: _standardised(_target_map(v, target)) for k, v in maps.items()}


def _scores(dataset: str, prof: Profile, index: int, family: str, reference: dict, position: tuple[int, int],
            run: RunOptions, progress: bool) -> dict[str, object]:
    """Everything the study measures on one model of ``family`` (:data:`FAMILIES`): ``row`` (metrics and
    scores), ``maps`` (target-class maps) and ``cis`` (its uniform and Gabor CI results)."""
    trojaned = family == "trojaned"
    model, meta = trojan_model(dataset, prof, index=index, trojaned=trojaned, relabelled=family == "relabelled",
                               progress=progress)
    source, target = TROJAN_PAIRS[dataset]
    test = load_dataset(dataset, "test")
    metrics = trojan_metrics(model, test, source=source, target=target, position=position)
    window = window_mask((28, 28), position, TRIGGER_SIZE)
    n = prof.trojan_samples_gpu if next(model.parameters()).device.type == "cuda" else prof.trojan_samples
    row: dict[str, object] = {"index": index, "trojaned": trojaned, "family": family, "position": position, **metrics,
                              "weights_sha256": meta["weights_sha256"], "n_samples": n}
    maps: dict[str, torch.Tensor] = {}
    cis = {}
    for kind in ("uniform", "gabor"):
        ci = cis[kind] = classification_images(model, n, noise=noise_kind(kind, dataset), run=run)
        cmp = compare_classification_images(ci, reference[kind])
        z_ref = _target_map(cmp.zmap, target)
        z_self = _target_map(ci.zmap, target)
        maps[f"{kind}_vs_reference"] = z_ref
        maps[f"{kind}_significant"] = _target_map(cmp.significant(0.05).double(), target) > 0
        maps[f"{kind}_self"] = z_self
        row[f"{kind}_vs_reference_window"] = float(trigger_score(z_ref, window))
        row[f"{kind}_vs_reference_scan"] = _scan(z_ref)
        row[f"{kind}_self_window"] = float(trigger_score(z_self, window))
        logit = _standardised(_target_map(ci.logit_images - reference[kind].logit_images, target))
        maps[f"{kind}_logit"] = logit
        row[f"{kind}_logit_window"] = float(trigger_score(logit, window))
        row[f"{kind}_logit_scan"] = _scan(logit)
        row[f"{kind}_significant_in_window"] = int(maps[f"{kind}_significant"][window].sum())
        row[f"{kind}_significant_outside"] = int(maps[f"{kind}_significant"][~window].sum())
        row[f"{kind}_target_share"] = float(ci.proportions[target])
    for name, grad in _gradients(model, dataset, prof, position).items():
        maps[name] = grad
        row[f"{name}_window"] = float(trigger_score(grad, window)) if bool(torch.isfinite(grad).all()) else float("nan")
        row[f"{name}_scan"] = _scan(grad)
    return {"row": row, "maps": maps, "cis": cis}


def detection_tests(rows: list[dict[str, object]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per control family (:data:`CONTROLS`) and score: :func:`~wna_helpers.applications.trojan.detection_test` of
    the trojaned models against that family (paired by index: the same seed), over the models where the score is
    defined; and ``holm_p`` / ``holm_paired_p``: Holm's adjustment across the :data:`DECLARED` scores (NaN for the
    exploratory ones)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for control in CONTROLS:
        out[control] = {}
        for sc in SCORES:
            def column(family: str) -> list[float]:
                got = {int(r["index"]): float(r[sc]) for r in rows if r["family"] == family}
                return [got.get(i, float("nan")) for i in sorted(got)]
            out[control][sc] = detection_test(column("trojaned"), column(control), paired=True)
        for key in ("p", "paired_p"):
            adj = holm_adjust(torch.tensor([out[control][sc][key] for sc in DECLARED], dtype=torch.float64)).tolist()
            for sc in SCORES:
                out[control][sc][f"holm_{key}"] = adj[DECLARED.index(sc)] if sc in DECLARED else float("nan")
    return out


def study_trojan_family(dataset: str, prof: Profile, *, refresh: bool = False,
                        progress: bool = False) -> dict[str, object]:
    """Train (or load) the three families and measure, per model, the attack and the detection scores.

    For every model: clean test accuracy, attack success (stamped test images of the source class
    called the target), and the detection scores of :data:`SCORES` for the target class, each
    computed in the window of trigger position ``i`` (clean and relabelled model ``i`` are scored in the same
    window as trojaned model ``i``):

    * ``*_target_share``: the share of the noise the model calls the target (its histogram; a trigger
      the noise can contain pulls noise to the target);
    * ``*_vs_reference_window``: mean z of the difference between this model's CI and the reference
      model's (Welch, from the sums of squares) inside the window minus outside;
    * ``*_vs_reference_scan``: the same z-map's largest 6x6 window mean minus its mean, without
      knowing the position;
    * ``*_logit_window`` / ``*_logit_scan``: the same two scores on the difference of the target's logit
      CIs (trojaned minus reference), standardised over pixels: defined even when argmax never picks
      the target;
    * ``*_self_window``: the model's own CI z-map against its permutation null, inside minus outside;
    * ``gradient*``: input-gradient baselines (:func:`_gradients`): the target's softmax over correctly classified
      target test images, the paper's stamped training images of the source, and the target's logit over clean
      source test images; standardised over pixels.

    A score is NaN for a model where it cannot be computed (its target class, or the reference's, got fewer than
    2 noise samples): such a model is left out of that score's tests (never ranked lowest), and the tables say
    how many were.

    Returns:
        dict: ``rows`` (one dict per model: clean, trojaned, then relabelled; ``family`` says which), ``tests``
        (:func:`detection_tests`: per control family and score, the AUC over the defined models, its exact
        permutation p, the paired sign-flip p, and Holm's adjustment across :data:`DECLARED`), ``auc``, ``auc_p``
        and ``undefined`` (against the clean family: score -> AUC, p, models left out), ``maps`` (the z-maps,
        significance masks and gradient maps of model 0, clean and trojaned: ``{"clean": {...}, "trojaned": {...}}``,
        and ``"pair"``), ``pair``, ``classes`` (source, target), ``positions``, ``reference_accuracy``.
    """
    positions = trigger_positions(dataset, prof)
    ref_model, ref_meta = trojan_model(dataset, prof, index=-1, trojaned=False, progress=progress)
    weights = [trojan_model(dataset, prof, index=i, trojaned=f == "trojaned", relabelled=f == "relabelled",
                            progress=progress)[1]["weights_sha256"]
               for f in FAMILIES for i in range(prof.trojan_models)]  # trains what is not cached yet
    run = RunOptions(seed=prof.seed, batch_size=prof.noise_batch, progress=progress)
    params = {"dataset": dataset, "profile": prof.settings(), "reference": ref_meta["weights_sha256"],
              "weights": weights, "positions": positions, "device": next(ref_model.parameters()).device.type,
              "declared": list(DECLARED), "scores": list(SCORES)}

    def compute() -> dict[str, object]:
        n = prof.trojan_samples_gpu if params["device"] == "cuda" else prof.trojan_samples
        reference = {kind: classification_images(ref_model, n, noise=noise_kind(kind, dataset), run=run)
                     for kind in ("uniform", "gabor")}
        rows, maps, first = [], {}, {}
        for family in FAMILIES:
            for i in range(prof.trojan_models):
                out = _scores(dataset, prof, i, family, reference, positions[i], run, progress)
                rows.append(out["row"])
                if i == 0 and family != "relabelled":
                    maps[family] = out["maps"]
                    first[family == "trojaned"] = out["cis"]
        # the trojaned model 0 against the clean model 0 trained the same way (same seed, no poisoned images)
        source, target = TROJAN_PAIRS[dataset]
        window = window_mask((28, 28), positions[0], TRIGGER_SIZE)
        maps["pair"], pair = {}, {}
        for kind in ("uniform", "gabor"):
            cmp = compare_classification_images(first[True][kind], first[False][kind])
            z, sig = _target_map(cmp.zmap, target), _target_map(cmp.significant(0.05).double(), target) > 0
            maps["pair"][f"{kind}_z"], maps["pair"][f"{kind}_significant"] = z, sig
            pair[kind] = {"window": float(trigger_score(z, window)), "scan": _scan(z),
                          "in_window": int(sig[window].sum()), "outside": int(sig[~window].sum()),
                          "share_trojaned": float(first[True][kind].proportions[target]),
                          "share_clean": float(first[False][kind].proportions[target])}
        tests = detection_tests(rows)
        clean = tests["clean"]
        undefined = {sc: sum(1 for r in rows if r["family"] in ("clean", "trojaned") and not r[sc] == r[sc])
                     for sc in SCORES}
        return {"rows": rows, "tests": tests, "auc": {sc: clean[sc]["auc"] for sc in SCORES},
                "auc_p": {sc: clean[sc]["p"] for sc in SCORES}, "undefined": undefined, "maps": maps, "pair": pair,
                "classes": TROJAN_PAIRS[dataset], "positions": positions,
                "reference_accuracy": ref_meta["test_accuracy"]}
    return cached("trojan", params, compute, refresh=refresh)
