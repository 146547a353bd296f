"""Microstimulation and psychometric curves (wna_helpers.microstimulation, wna_helpers.psychometrics), with known
answers."""
from __future__ import annotations

import doctest
import math
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from torch import nn

from wna_helpers.applications import microstimulation
from wna_helpers.methods import psychometrics
from wna_helpers.applications.microstimulation import class_inhibition, microstimulate, random_inhibition, unit_activation
from wna_helpers.methods.psychometrics import fit_psychometric, psychometric_curve
from wna_helpers.engine.stimuli import Images, Noise, Uniform


def _conv_model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 4))


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(model: nn.Module, state: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def _three_class() -> nn.Module:
    """Two pixels (x1, x2). Hidden unit 0 = relu(10 x1 - 20 x2) feeds only class 0 (c); class 2 (d) has logit
    10 (x2 - 0.5), class 1 (e) the opposite. Class 0 can only win where x1 > 2 x2, i.e. x2 < 0.5, where e
    beats d: inhibiting unit 0 hands stimuli from c to e, never to d, so d's curve cannot move."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[10.0, -20.0], [0.0, 10.0], [0.0, -10.0]]))
        model[1].bias.copy_(torch.tensor([0.0, -5.0, 5.0]))
        model[3].weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 1.0], [0.0, 1.0, -1.0]]))
        model[3].bias.zero_()
    return model


class _Recorder(nn.Module):
    """Wraps a model and keeps every input it sees."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.seen = inner, []

    def forward(self, x):
        self.seen.append(x.clone())
        return self.inner(x)


# ---------------------------------------------------------------- microstimulate


def test_microstimulate_shifts_and_restores_bit_exactly():
    model = _conv_model()
    state = _state(model)
    b0, b3 = state["0.bias"], state["3.bias"]
    # subtracting would not restore: (b + 0.1) - 0.1 != b for some element
    assert not torch.equal((b3 + 0.1) - 0.1, b3) or not torch.equal((b0 - 0.3) + 0.3, b0)
    delta3 = torch.tensor([0.1, -0.2, 0.3, 0.7])
    x = torch.rand(5, 1, 6, 6)
    with microstimulate(model, {"0": -0.3, "3": delta3}) as m:
        assert m is model
        assert torch.equal(model[0].bias, b0 + torch.tensor(-0.3))
        assert torch.equal(model[3].bias, b3 + delta3)
        assert torch.equal(model[0].weight, state["0.weight"])
        out = model(x)  # with gradients enabled: the forward uses the shifted biases
    ref = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(48, 4))
    ref.load_state_dict({**state, "0.bias": b0 - 0.3, "3.bias": b3 + delta3})
    assert torch.allclose(out, ref(x))
    assert _same(model, state)
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    with torch.no_grad(), microstimulate(model, {"3": 0.1}):
        assert not torch.equal(model[3].bias, b3)
    assert _same(model, state)


def test_microstimulate_restores_when_the_block_raises():
    model = _conv_model()
    state = _state(model)
    with pytest.raises(RuntimeError, match="boom"):
        with microstimulate(model, {"0": 0.1, "3": 0.1}):
            assert not _same(model, state)
            raise RuntimeError("boom")
    assert _same(model, state)


def test_microstimulate_shared_bias_gets_both_deltas_and_is_restored():
    lin = nn.Linear(2, 2)
    model = nn.Sequential(lin, nn.ReLU(), lin)  # "0" and "2" are one module
    state = _state(model)
    with microstimulate(model, {"0": 0.1, "2": 0.2}):
        assert torch.allclose(lin.bias, state["0.bias"] + 0.3)
    assert _same(model, state)


@pytest.mark.parametrize("deltas, match", [
    ({"3": 0.1, "fc9": 0.1}, r"no layer 'fc9'.*\['0', '3'\]"),
    ({"3": 0.1, "1": 0.1}, "no bias"),
    ({"3": torch.zeros(5)}, r"shape \(5,\).*\(4,\)"),
    ({"0": torch.zeros(3, 1)}, "broadcast"),
    ({"3": float("nan")}, "finite"),
    ({"3": torch.tensor([0.0, float("inf"), 0.0, 0.0])}, "finite"),
    ({"3": "0.1"}, "number or a tensor"),
    ({"3": True}, "number or a tensor"),
    ({"": 0.1}, "no layer"),
])
def test_microstimulate_rejects_bad_input_before_touching_parameters(deltas, match):
    model = _conv_model()
    state = _state(model)
    with pytest.raises(ValueError, match=match):
        with microstimulate(model, deltas):
            pytest.fail("the block must not run")
    assert _same(model, state)


def test_microstimulate_layer_without_bias_parameter():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False))
    with pytest.raises(ValueError, match="no bias.*layers with a bias: \\[\\]"):
        with microstimulate(model, {"1": 0.1}):
            pass


# ---------------------------------------------------------------- psychometric curves


def test_curve_matches_the_exact_share_of_a_one_pixel_threshold_model():
    # s = (1 - w) u + w with u ~ U[0, 1]; class 1 iff s > 0.75: P = 0.25 / (1 - w) for w < 0.75, else 1.
    model = nn.Sequential(nn.Flatten(), nn.Linear(1, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[0.0], [1.0]]))
        model[1].bias.copy_(torch.tensor([0.75, 0.0]))
    w = torch.tensor([0.0, 0.2, 0.4, 0.6, 0.8, 1.0], dtype=torch.float64)
    n = 5000
    curve = psychometric_curve(model, torch.ones(3, 1), 1, w, n_per_weight=n)
    exact = torch.where(w < 0.75, 0.25 / (1 - w), torch.ones_like(w))
    se = (exact * (1 - exact) / n).sqrt()
    assert bool(((curve.shares - exact).abs() <= 4 * se + 1e-12).all()), (curve.shares, exact)
    assert curve.hits.dtype == torch.int64
    assert curve.shares.dtype == torch.float64 and curve.weights.dtype == torch.float64
    assert torch.equal(curve.shares, curve.hits.double() / n) and curve.n_per_weight == n and curve.target == 1
    fit = curve.fit(n_boot=200)  # a logistic is only an approximation of 0.25 / (1 - w): it rises
    assert fit.converged and fit.slope > 0 and 0.2 < fit.threshold < 0.6


def test_inhibiting_a_unit_that_feeds_only_class_c_moves_only_c_and_its_heir():
    model = _three_class()
    state = _state(model)
    w = torch.linspace(0, 1, 11)
    img_c = torch.tensor([[1.0, 0.0], [0.9, 0.1]]).view(2, 1, 2)
    img_d = torch.tensor([[0.0, 1.0], [0.2, 0.9]]).view(2, 1, 2)
    kw = dict(n_per_weight=1500, seed=3)
    for images in (img_c, img_d):
        base = {t: psychometric_curve(model, images, t, w, **kw) for t in range(3)}
        with microstimulate(model, {"1": torch.tensor([-1.5, 0.0, 0.0])}):
            inhib = {t: psychometric_curve(model, images, t, w, **kw) for t in range(3)}
        assert torch.equal(inhib[2].hits, base[2].hits)  # d never competes with c: identical
        assert bool((inhib[0].hits <= base[0].hits).all())
        assert torch.equal(base[0].hits - inhib[0].hits, inhib[1].hits - base[1].hits)  # c's loss is e's gain
        assert _same(model, state)
    # with the class-c images the curve of c moves right by a lot
    base_c = psychometric_curve(model, img_c, 0, w, **kw)
    with microstimulate(model, {"1": torch.tensor([-1.5, 0.0, 0.0])}):
        inhib_c = psychometric_curve(model, img_c, 0, w, **kw)
    assert int((base_c.hits - inhib_c.hits).sum()) > 500
    assert inhib_c.fit(n_boot=100).threshold > base_c.fit(n_boot=100).threshold + 0.05
    assert float(base[2].shares[-1]) > 0.9  # d's own curve (d images) is not trivial


def test_curve_is_batch_size_invariant_and_uses_common_random_numbers():
    model = _conv_model()
    images = torch.rand(7, 1, 6, 6)
    w = [0.0, 0.6, 1.0]
    kw = dict(n_per_weight=4500, seed=11)  # > one internal chunk of 4,096
    small = dict(n_per_weight=300, seed=11)
    assert torch.equal(psychometric_curve(model, images, 2, w, batch_size=7, **small).hits,
                       psychometric_curve(model, images, 2, w, batch_size=4096, **small).hits)
    rec_a = _Recorder(model)
    a = psychometric_curve(rec_a, images, 2, w, batch_size=1000, **kw)
    other = _conv_model()
    with torch.no_grad():
        other[3].weight.mul_(-1.0)
    rec_b = _Recorder(other)
    b = psychometric_curve(rec_b, images, 2, w, batch_size=4096, **kw)
    c = psychometric_curve(model, images, 2, w, batch_size=4096, **kw)
    assert torch.equal(a.hits, c.hits)
    seen_a, seen_b = torch.cat(rec_a.seen[1:]), torch.cat(rec_b.seen[1:])  # [0] is the shape probe
    assert seen_a.shape == (3 * 4500, 1, 6, 6)
    assert torch.equal(seen_a, seen_b)  # two models, identical stimuli
    assert not torch.equal(a.hits, b.hits)
    # the stimuli of weight j depend on (seed, j) only: change weight 1, weight 0's stimuli stay
    rec_c = _Recorder(model)
    psychometric_curve(rec_c, images, 2, [0.0, 0.5], batch_size=999, **kw)
    assert torch.equal(torch.cat(rec_c.seen[1:])[:4500], seen_a[:4500])
    # w = 0 is pure U[0, 1] noise, w = 1 is always one of the images
    assert float(seen_a[:4500].min()) >= 0 and float(seen_a[:4500].max()) <= 1
    last = seen_a[-4500:].flatten(1)
    assert bool((last[:, None] == images.flatten(1)[None]).all(-1).any(1).all())
    # another seed draws other stimuli
    rec_d = _Recorder(model)
    psychometric_curve(rec_d, images, 2, w, batch_size=4096, n_per_weight=4500, seed=12)
    assert not torch.equal(torch.cat(rec_d.seen[1:]), seen_a)


def test_curve_uses_the_given_noise_and_mixes_it_with_the_images():
    rec = _Recorder(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
    images = torch.full((1, 1, 2, 2), 1.0)
    psychometric_curve(rec, images, 0, [0.0, 0.5], noise=Uniform(0.2, 0.4), n_per_weight=500)
    seen = torch.cat(rec.seen[1:])
    assert float(seen[:500].min()) >= 0.2 and float(seen[:500].max()) <= 0.4
    half = seen[500:]  # 0.5 * U[0.2, 0.4] + 0.5 * 1 fills [0.6, 0.7]
    assert float(half.min()) >= 0.6 - 1e-6 and float(half.max()) <= 0.7 + 1e-6
    assert float(half.min()) < 0.605 and float(half.max()) > 0.695


def test_zero_microstimulation_gives_the_identical_curve():
    model = _conv_model()
    images = torch.rand(4, 1, 6, 6)
    w = torch.linspace(0, 1, 6)
    base = psychometric_curve(model, images, 1, w, n_per_weight=700)
    with microstimulate(model, {"0": torch.zeros(3), "3": 0.0}):
        same = psychometric_curve(model, images, 1, w, n_per_weight=700)
    assert torch.equal(base.hits, same.hits)


def test_curve_leaves_the_model_as_found():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 3))
    model.train()
    model[1].eval()
    state = _state(model)
    images = torch.rand(5, 1, 2, 2)
    a = psychometric_curve(model, images, 0, [0.2, 0.8], n_per_weight=600)
    b = psychometric_curve(model, images, 0, [0.2, 0.8], n_per_weight=600)
    assert torch.equal(a.hits, b.hits)  # eval mode inside: dropout off
    assert [m.training for m in model.modules()] == [True, True, False, True, True]
    assert _same(model, state) and all(p.grad is None for p in model.parameters())
    unit_activation(model, "1", images)
    assert [m.training for m in model.modules()] == [True, True, False, True, True]


@pytest.mark.parametrize("kwargs, match", [
    (dict(target=4), r"target.*\[0, 4\)"),
    (dict(target=-1), "target"),
    (dict(target=True), "target"),
    (dict(target=1.0), "target"),
    (dict(weights=[0.5, 1.5]), r"\[0, 1\]"),
    (dict(weights=[]), "non-empty"),
    (dict(weights=0.5), "non-empty"),
    (dict(noise="pink"), "unknown noise"),
    (dict(noise=Images(torch.rand(3, 1, 6, 6))), "not noise"),
    (dict(n_per_weight=0), "n_per_weight"),
    (dict(batch_size=0), "batch_size"),
    (dict(seed=1.5), "seed"),
    (dict(images=torch.rand(0, 1, 6, 6)), "non-empty"),
    (dict(images=torch.full((2, 1, 6, 6), float("nan"))), "finite"),
])
def test_curve_error_paths(kwargs, match):
    model = _conv_model()
    args = dict(images=torch.rand(3, 1, 6, 6), target=0, weights=[0.0, 1.0])
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        psychometric_curve(model, args.pop("images"), args.pop("target"), args.pop("weights"), **args)


# ---------------------------------------------------------------- logistic fit


def test_fit_recovers_an_exact_logistic():
    w = torch.linspace(0, 1, 21, dtype=torch.float64)
    fit = fit_psychometric(w, torch.sigmoid(15 * (w - 0.4)), n_trials=1000, n_boot=300)
    assert fit.converged and fit.n_boot == 300
    assert abs(fit.threshold - 0.4) < 1e-6 and abs(fit.slope - 15) < 1e-4
    assert fit.threshold_ci[0] < 0.4 < fit.threshold_ci[1] and fit.slope_ci[0] < 15 < fit.slope_ci[1]
    assert torch.allclose(fit.predict(w), torch.sigmoid(15 * (w - 0.4)), atol=1e-6)
    assert fit.predict(0.4).item() == pytest.approx(0.5)


def test_fit_on_binomial_data_and_its_interval_covers_the_truth():
    w = torch.linspace(0, 1, 11, dtype=torch.float64)
    truth = torch.sigmoid(8 * (w - 0.6))
    gen = torch.Generator().manual_seed(5)
    covered_thr = covered_slope = 0
    reps = 60
    for _ in range(reps):
        shares = torch.binomial(torch.full_like(w, 200), truth, generator=gen) / 200
        fit = fit_psychometric(w, shares, n_trials=200, n_boot=300, seed=_)
        assert fit.converged and fit.boot_converged == 1.0
        assert abs(fit.threshold - 0.6) < 0.08 and abs(fit.slope - 8) < 3
        covered_thr += fit.threshold_ci[0] <= 0.6 <= fit.threshold_ci[1]
        covered_slope += fit.slope_ci[0] <= 8 <= fit.slope_ci[1]
    assert covered_thr >= 0.85 * reps and covered_slope >= 0.85 * reps  # nominal 95 %
    # a wider level gives a wider interval; same seed, same interval
    a = fit_psychometric(w, shares, n_trials=200, n_boot=300, level=0.5)
    b = fit_psychometric(w, shares, n_trials=200, n_boot=300, level=0.99)
    assert b.threshold_ci[0] < a.threshold_ci[0] < a.threshold_ci[1] < b.threshold_ci[1]
    assert fit_psychometric(w, shares, n_trials=200, n_boot=300, level=0.5) == a


def test_fit_with_per_weight_trials_matches_weighted_data():
    w = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    n = torch.tensor([100, 400, 1000, 400, 100])
    fit = fit_psychometric(w, torch.sigmoid(10 * (w - 0.5)), n_trials=n, n_boot=50)
    assert abs(fit.threshold - 0.5) < 1e-6 and abs(fit.slope - 10) < 1e-4


def test_fit_degenerate_data_does_not_crash():
    w = torch.linspace(0, 1, 11)
    sep = fit_psychometric(w, (w >= 0.5).double(), n_boot=100)
    assert sep.converged and 0.4 < sep.threshold < 0.5 and sep.slope > 50
    zeros = fit_psychometric(w, torch.zeros(11), n_boot=100)
    ones = fit_psychometric(w, torch.ones(11), n_boot=100)
    for fit, level in ((zeros, 0.0), (ones, 1.0)):
        assert fit.converged and not (0 <= fit.threshold <= 1)  # never crosses 0.5: extrapolated
        assert abs(fit.slope) < 1e-3 and fit.slope == fit.slope
        assert torch.allclose(fit.predict(w), torch.full((11,), level, dtype=torch.float64), atol=1e-6)
    no_boot = fit_psychometric(w, torch.sigmoid(5 * (w - 0.5)), n_boot=0)
    assert no_boot.threshold_ci[0] != no_boot.threshold_ci[0] and no_boot.n_boot == 0


def test_degenerate_shares_are_named_and_their_intervals_do_not_collapse():
    """All 0, all 1 or a step of 0s and 1s cannot place the threshold finely: the fit says so, and the interval
    reaches the range's end or covers the step instead of having zero width."""
    w = torch.linspace(0, 1, 11, dtype=torch.float64)
    zeros = fit_psychometric(w, torch.zeros(11), n_trials=200, n_boot=200)
    assert zeros.degenerate == "never reaches 0.5" and zeros.threshold_ci[1] == math.inf
    assert zeros.threshold_ci[0] <= 1.0
    ones = fit_psychometric(w, torch.ones(11), n_trials=200, n_boot=200)
    assert ones.degenerate == "always above 0.5" and ones.threshold_ci[0] == -math.inf
    step = fit_psychometric(w, (w >= 0.55).double(), n_trials=200, n_boot=200)
    assert step.degenerate == "a step" and step.threshold_ci[0] <= 0.5 and step.threshold_ci[1] >= 0.6
    assert step.threshold_ci[1] - step.threshold_ci[0] > 0
    ordinary = fit_psychometric(w, torch.sigmoid(8 * (w - 0.4)), n_trials=200, n_boot=200)
    assert ordinary.degenerate == "" and math.isfinite(ordinary.threshold_ci[0]) and math.isfinite(
        ordinary.threshold_ci[1])


@pytest.mark.parametrize("args, kwargs, match", [
    (([0.0, 1.0], [0.1, 0.2, 0.3]), {}, "shape"),
    (([0.5, 0.5], [0.1, 0.2]), {}, "distinct"),
    (([0.0, 1.0], [0.1, 1.2]), {}, r"\[0, 1\]"),
    (([0.0, 1.0], [0.1, float("nan")]), {}, r"\[0, 1\]"),
    (([0.0, 1.0], [0.1, 0.9]), dict(n_trials=0), "n_trials"),
    (([0.0, 1.0], [0.1, 0.9]), dict(n_trials=torch.tensor([10.0, 10.0])), "n_trials"),
    (([0.0, 1.0], [0.1, 0.9]), dict(n_trials=torch.tensor([10, 10, 10])), "n_trials"),
    (([0.0, 1.0], [0.1, 0.9]), dict(n_boot=-1), "n_boot"),
    (([0.0, 1.0], [0.1, 0.9]), dict(level=1.0), "level"),
    (([0.0, 1.0], [0.1, 0.9]), dict(seed="x"), "seed"),
])
def test_fit_error_paths(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_psychometric(*args, **kwargs)


# ---------------------------------------------------------------- unit activations and inhibition deltas


def test_unit_activation_equals_the_direct_computation():
    model = _conv_model()
    images = torch.rand(10, 1, 6, 6)
    with torch.no_grad():
        conv = model[0](images).clamp(min=0).double().mean((0, 2, 3))
        fc = model(images).clamp(min=0).double().mean(0)
    got = unit_activation(model, "0", images, batch_size=3)
    assert got.dtype == torch.float64 and got.shape == (3,)
    assert torch.allclose(got, conv, rtol=1e-6, atol=1e-9)
    assert torch.allclose(unit_activation(model, "0", images), got, rtol=1e-6, atol=1e-9)  # batch-size invariant
    assert torch.allclose(unit_activation(model, "3", images, batch_size=4), fc, rtol=1e-6, atol=1e-9)
    assert not model[0]._forward_hooks and not model[3]._forward_hooks


def test_unit_activation_error_paths_remove_the_hook():
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(ValueError, match=r"returns \(4, 2, 8\)"):
        unit_activation(model, "0", torch.rand(4, 1, 10))
    assert not model[0]._forward_hooks
    with pytest.raises(ValueError, match=r"no layer 'conv9'.*\['0', '1', '2'\]"):
        unit_activation(model, "conv9", torch.rand(4, 1, 10))
    with pytest.raises(ValueError, match="batch_size"):
        unit_activation(model, "2", torch.rand(4, 1, 10), batch_size=0)
    with pytest.raises(ValueError, match="non-empty"):
        unit_activation(model, "2", torch.rand(0, 1, 10))


def test_class_inhibition_known_values_and_errors():
    delta = class_inhibition(torch.tensor([0.0, 1.0, 2.0, 4.0]), 2, scale=0.1)
    assert torch.allclose(delta, torch.tensor([0.0, -0.05, -0.1, -0.2], dtype=torch.float64))
    assert torch.equal(class_inhibition(torch.tensor([1.0, 3.0]), 0), torch.zeros(2, dtype=torch.float64))
    for bad, match in ((torch.zeros(3), "max"), (torch.tensor([1.0, float("nan")]), "finite"),
                       (torch.zeros(0), "non-empty")):
        with pytest.raises(ValueError, match=match):
            class_inhibition(bad, 1)
    with pytest.raises(ValueError, match="k must be"):
        class_inhibition(torch.ones(2), float("inf"))


def test_random_inhibition_is_a_seeded_derangement():
    delta = -torch.arange(1.0, 21.0)
    r = random_inhibition(delta, seed=3)
    assert torch.equal(r.sort().values, delta.sort().values) and r.sum() == delta.sum()
    assert bool((r != delta).all())  # every unit gets another unit's value
    assert torch.equal(random_inhibition(delta, seed=3), r) and not torch.equal(random_inhibition(delta, seed=4), r)
    sparse = torch.tensor([0.0, 0.0, -1.0, 0.0, -2.0, 0.0])
    assert int((random_inhibition(sparse) != 0).sum()) == 2
    assert torch.equal(random_inhibition(torch.tensor([-1.0])), torch.tensor([-1.0]))
    with pytest.raises(ValueError, match="finite"):
        random_inhibition(torch.tensor([float("nan"), 1.0]))


def test_end_to_end_class_inhibition_through_microstimulate():
    model = _conv_model()
    images = torch.rand(6, 1, 6, 6)
    delta = class_inhibition(unit_activation(model, "0", images), 3, scale=0.1)
    state = _state(model)
    with microstimulate(model, {"0": delta}):
        assert torch.allclose(model[0].bias.double(), state["0.bias"].double() + delta, atol=1e-7)
    with microstimulate(model, {"0": random_inhibition(delta)}):
        pass
    assert _same(model, state)


def test_docstring_examples():
    assert doctest.testmod(psychometrics, raise_on_error=False).failed == 0
    assert doctest.testmod(microstimulation, raise_on_error=False).failed == 0


@dataclass(frozen=True)
class _ZeroThenUniform(Noise):
    """Pixel 0 carries no noise (so the stimulus reads w exactly); pixel 1 is U[0, 1]."""

    kind: ClassVar[str] = "zero_then_uniform"

    def sample(self, gen, shape, device, dtype):
        x = torch.rand(shape, generator=gen, device=device, dtype=dtype)
        x[:, 0] = 0.0
        return x


class _LogisticObserver(nn.Module):
    """Says 1 when the noise value u = s1 / (1 - w) lies below sigmoid(k (w - t)), with w = s0: for
    stimuli (1 - w) * noise + w * (1, 0) its share of 1s is exactly sigmoid(k (w - t))."""

    def __init__(self, threshold: float, slope: float) -> None:
        super().__init__()
        self.t, self.k = threshold, slope

    def forward(self, x):
        w, s1 = x[:, 0], x[:, 1]
        u = s1 / (1 - w)
        margin = torch.sigmoid(self.k * (w - self.t)) - u
        return torch.stack([-margin, margin], 1)


def test_fit_recovers_threshold_and_slope_of_a_model_with_a_known_psychometric_function():
    model = _LogisticObserver(threshold=0.42, slope=12.0)
    weights = [round(0.05 * i, 2) for i in range(19)]  # w < 1: the observer reads u = s1 / (1 - w)
    curve = psychometric_curve(model, torch.tensor([[1.0, 0.0]]), 1, weights, noise=_ZeroThenUniform(),
                               n_per_weight=4000, seed=3)
    truth = torch.sigmoid(12.0 * (torch.tensor(weights, dtype=torch.float64) - 0.42))
    assert (curve.shares - truth).abs().max() < 4 * (0.25 / 4000) ** 0.5  # the curve is the known function
    fit = fit_psychometric(curve.weights, curve.shares, n_trials=4000, n_boot=500, seed=1)
    assert fit.threshold_ci[0] <= 0.42 <= fit.threshold_ci[1] and abs(fit.threshold - 0.42) < 0.01
    assert fit.slope_ci[0] <= 12.0 <= fit.slope_ci[1] and abs(fit.slope - 12.0) < 1.0


def test_fc1_inhibition_is_not_normalised_as_in_the_paper():
    a = torch.tensor([0.0, 1.0, 2.0, 4.0])
    assert torch.allclose(class_inhibition(a, 10, scale=0.01, normalize=False), -0.1 * a.double())
    assert torch.allclose(class_inhibition(a, 10, scale=0.01), -0.1 * a.double() / 4)
    assert torch.equal(class_inhibition(torch.zeros(3), 5, normalize=False), torch.zeros(3, dtype=torch.float64))
