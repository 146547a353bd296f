"""The table of bad inputs: each one a clear error that names what is allowed, raised before any heavy work.

Every row is (a call, the exception, a phrase of its message). The calls use tiny models, so a row that
only failed after a long run would still be fast here; the ones where "before the work" matters also check
that no sample was drawn (``noise.sample`` counted) or no forward pass made.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from torch import nn

import wna_helpers as wna
from wna_helpers.engine.checks import MAX_SAMPLES

SHAPE = (1, 4, 4)


def linear(k: int = 3, dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, k)).to(dtype)


class Counting(wna.Uniform):
    """Uniform noise that counts the chunks drawn: the proof that an error came before the work."""

    drawn: list = []

    def sample(self, gen, shape, device, dtype):  # noqa: D102
        Counting.drawn.append(shape[0])
        return super().sample(gen, shape, device, dtype)


def images(*, nan: bool = False, scale: float = 1.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    x = torch.rand(20, *SHAPE) * scale
    if nan:
        x[3, 0, 1, 1] = float("nan")
    return x.to(dtype)


CASES = [
    # images: floats, finite, in the declared range, the model's shape
    ("Images with a NaN pixel", lambda: wna.Images(images(nan=True)), "NaN or ±inf"),
    ("Mixture with a NaN pixel", lambda: wna.Mixture("uniform", images(nan=True), 0.3), "NaN or ±inf"),
    ("uint8 Images", lambda: wna.Images((images() * 255).to(torch.uint8)), "floating-point"),
    ("0-255 float Mixture", lambda: wna.Mixture("uniform", images(scale=255), 0.3), "divide by 255"),
    ("uint8 psychometric images", lambda: wna.psychometric_curve(linear(), (images() * 255).to(torch.uint8), 0,
                                                                 [0.0, 0.5]), "floating-point"),
    ("0-255 psychometric images", lambda: wna.psychometric_curve(linear(), images(scale=255), 0, [0.0, 0.5]),
     "outside the declared range"),
    ("wrong-shaped psychometric images", lambda: wna.psychometric_curve(linear(), torch.rand(5, 1, 3, 3), 0,
                                                                        [0.0, 0.5]), "cannot take images of shape"),
    ("0-255 attack images", lambda: wna.blend_attack(linear(), images(scale=255), torch.zeros(20, dtype=torch.long),
                                                      torch.rand(3, *SHAPE)), "outside the declared range"),
    ("perturbation images outside clip", lambda: wna.perturbation_attack(
        linear(), images(scale=3), torch.zeros(20, dtype=torch.long), torch.rand(3, *SHAPE), [1.0]),
     r"outside the declared range \[0, 1\]"),
    ("NaN two-class images", lambda: wna.two_class_ci(linear(), images(nan=True), images(), n_samples=10),
     "NaN or ±inf"),
    ("activation labels beyond the classes", lambda: wna.activation_statistics(
        linear(), ["1"], noise=wna.Images(images(), torch.full((20,), 7)), input_shape=SHAPE, progress=False),
     "labels go up to 7 but the model has 3 classes"),
    ("float labels", lambda: wna.Images(images(), torch.zeros(20)), "integer tensor"),
    # degenerate noise, comparisons of different noise
    ("Gaussian(0, 0)", lambda: wna.Gaussian(0, 0), "std must be > 0"),
    ("Gabor fit on constant images", lambda: wna.GaborNoise.fit(torch.full((4, 1, 8, 8), 0.5), n_components=2,
                                                                cache=False),
     "constant images"),
    ("CIs of different noise compared", lambda: wna.compare_classification_images(
        wna.classification_images(linear(), 200, noise="uniform", input_shape=SHAPE, progress=False),
        wna.classification_images(linear(), 200, noise="gaussian", input_shape=SHAPE, progress=False)),
     "different stimuli"),
    # shapes, dtypes, classes: on the probe, before the first sample
    ("input_shape=784", lambda: wna.classification_images(linear(), 100, noise=Counting(), input_shape=784),
     "input_shape must be a tuple of positive integers"),
    ("a float in input_shape", lambda: wna.classification_images(linear(), 100, noise=Counting(),
                                                                 input_shape=(1, 4.0, 4)), "input_shape"),
    ("a model with one logit", lambda: wna.classification_images(linear(1), 100, noise=Counting(),
                                                                 input_shape=SHAPE), "at least two classes"),
    ("a float64 model", lambda: wna.classification_images(linear(dtype=torch.float64), 100, noise=Counting(),
                                                          input_shape=SHAPE), "float64"),
    ("a half model", lambda: wna.classification_images(linear(dtype=torch.float16), 100, noise=Counting(),
                                                       input_shape=SHAPE), "call model.float()"),
    ("n_samples above the maximum", lambda: wna.classification_images(linear(), MAX_SAMPLES + 1, noise=Counting(),
                                                                      input_shape=SHAPE), "maximum"),
    ("alpha as a string", lambda: wna.classification_images(linear(), 4096, noise="uniform", input_shape=SHAPE,
                                                            progress=False).significant("0.05"),
     "alpha must be a number in"),
]


@pytest.mark.parametrize("what, call, phrase", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_error_before_the_work(what, call, phrase):
    Counting.drawn = []
    with pytest.raises(ValueError, match=phrase):
        call()
    assert Counting.drawn == [], f"{what}: noise was drawn before the error"


def test_a_huge_run_is_planned_in_constant_time_and_memory():
    """10^11 samples: the error comes from the bad model shape at once, not after listing 2.4e7 chunks."""
    t = time.perf_counter()
    with pytest.raises(ValueError, match="input_shape"):
        wna.classification_images(linear(), 10**11, noise=Counting(), input_shape=(1, 5, 5))
    assert time.perf_counter() - t < 5 and Counting.drawn == []


def test_a_truncated_or_foreign_checkpoint_is_an_error_naming_the_file(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    model = linear()
    run = dict(noise="uniform", input_shape=SHAPE, progress=False, checkpoint=str(ckpt), checkpoint_every=1,
               batch_size=64, chunk_size=64)
    wna.classification_images(model, 256, **run)
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(ValueError, match=f"checkpoint {ckpt} cannot be read"):
        wna.classification_images(model, 256, **run)
    torch.save({"key": "another job", "done": 0, "acc": []}, ckpt)
    with pytest.raises(ValueError, match="belongs to another job"):
        wna.classification_images(model, 256, **run)


def test_orphan_temporary_files_are_removed_on_the_next_start(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    orphan = tmp_path / ".run.ckpt.abc123.tmp"     # what a write killed mid-way leaves (atomic_torch_save)
    orphan.write_bytes(b"half")
    other = tmp_path / ".other.ckpt.abc123.tmp"    # another job's file is left alone
    other.write_bytes(b"half")
    wna.classification_images(linear(), 128, noise="uniform", input_shape=SHAPE, progress=False, checkpoint=str(ckpt))
    assert not orphan.exists() and other.exists() and ckpt.exists()


def test_training_removes_the_orphans_of_its_checkpoint(tmp_path):
    from dataclasses import replace
    prof = replace(wna.PROFILES["quick"], name="tiny-orphans", train_subset=200)
    path = Path(wna.checkpoint_path("logreg", "mnist", prof, cache_dir=tmp_path))
    path.parent.mkdir(parents=True, exist_ok=True)
    orphan = path.parent / f".{path.name}.dead.tmp"
    orphan.write_bytes(b"half")
    wna.get_trained_model("logreg", "mnist", prof, cache_dir=tmp_path, progress=False)
    assert path.exists() and not orphan.exists()
