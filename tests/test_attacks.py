"""Black-box targeted attacks from classification images (wna_helpers.attacks), with known answers."""
from __future__ import annotations

import doctest

import pytest
import torch
from torch import nn

import wna_helpers as wna
from wna_helpers.applications import attacks
from wna_helpers.applications.attacks import (BlendAttack, PerturbationAttack, blend_attack, ci_directions, mean_image_directions,
                                 perturbation_attack, random_directions)

SHAPE = (1, 4, 4)
D, K, N = 16, 4, 400


def _linear(scale: float = 3.0, seed: int = 0) -> nn.Sequential:
    """Linear model whose K weight rows are orthonormal times ``scale``; the bias centres the logits on
    the mean image 0.5 (plus a little jitter) so that every class gets a share of U[0, 1] images."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(D, K, generator=gen, dtype=torch.float64))
    model = nn.Sequential(nn.Flatten(), nn.Linear(D, K))
    with torch.no_grad():
        model[1].weight.copy_(scale * q.T)
        model[1].bias.copy_(-0.5 * scale * q.sum(0) + 0.1 * torch.randn(K, generator=gen, dtype=torch.float64))
    return model


def _data(model: nn.Module, n: int = N, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform images and the model's clean decisions as their labels."""
    x = torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return x, model(x).argmax(1)


def _mean_directions(model: nn.Module) -> torch.Tensor:
    w = model[1].weight.detach()
    return (w - w.mean(0)).view(K, *SHAPE)


@pytest.fixture(scope="module")
def linear():
    model = _linear()
    x, y = _data(model)
    assert len(set(y.tolist())) == K  # every class occurs, so every target excludes some images
    return model, x, y


@pytest.fixture(scope="module")
def ci(linear):
    return wna.classification_images(linear[0], 20_000, noise="uniform", input_shape=SHAPE, null_permutations=0,
                                     progress=False)


# ---------------------------------------------------------------- known answers


def test_mean_weight_direction_flips_at_the_computed_budget(linear):
    """For z = Wx + b and unit u along w_t - mean w, image i goes to t once eps > max_k (z_k - z_t) / (w_t - w_k).u."""
    model, x, y = linear
    w, b = model[1].weight.detach().double(), model[1].bias.detach().double()
    dirs = _mean_directions(model)
    z = x.view(N, -1).double() @ w.T + b
    budgets = [0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0]
    out = perturbation_attack(model, x, y, dirs, budgets, clip=None)
    assert isinstance(out, PerturbationAttack)
    assert out.targets.tolist() == list(range(K)) and out.success.shape == (len(budgets), K)
    for t in range(K):
        u = dirs[t].flatten().double()
        u = u / u.norm()
        g = (w[t] - w) @ u  # (K,), > 0 for k != t with orthonormal rows
        assert bool((g[torch.arange(K) != t] > 0).all())
        keep = y != t
        need = torch.stack([(z[keep, k] - z[keep, t]) / g[k] for k in range(K) if k != t], 1).amax(1)
        assert int(out.n_images[t]) == int(keep.sum())
        for e, eps in enumerate(budgets):
            expected = float((need < eps).double().mean())
            assert abs(float(out.success[e, t]) - expected) <= 1.0 / int(keep.sum()) + 1e-12, (t, eps)
    assert out.success[0].eq(0).all()  # eps = 0: the clean decisions, none is t
    assert out.success[-1].eq(1).all()
    # monotone non-decreasing in the budget (linear model, no clipping)
    assert bool((out.success.diff(dim=0) >= 0).all())
    assert bool((out.mean.diff() >= 0).all()) and 0 < float(out.mean[3]) < 1


def test_ci_direction_flips_decisions_and_random_does_not(linear, ci):
    model, x, y = linear
    dirs = ci_directions(ci)
    assert dirs.dtype == torch.float32 and dirs.shape == (K, *SHAPE)
    assert torch.allclose(dirs.double(), ci.images - ci.mean_stimulus, atol=1e-6)
    # the CI direction of a linear model lies close to w_t - mean w
    ref = _mean_directions(model).view(K, -1)
    r = torch.nn.functional.cosine_similarity(dirs.view(K, -1), ref, dim=1)
    assert bool((r > 0.9).all()), r
    budgets = [0.0, 0.25, 1.0, 8.0]
    out = perturbation_attack(model, x, y, dirs, budgets, clip=None)
    assert bool((out.success[2:] >= 0.95).all()), out.success
    assert float(out.mean[1]) < 0.9  # a small budget is not enough
    assert bool((out.success.diff(dim=0) >= 0).all())
    rand = perturbation_attack(model, x, y, random_directions(dirs, seed=0), budgets, clip=None)
    assert float(rand.mean[2]) < 0.3 and float(rand.mean[-1]) < 0.6, rand.success
    assert float(out.mean[-1]) - float(rand.mean[-1]) > 0.35
    # the same norm actually applied for both
    assert torch.allclose(out.actual_l2, rand.actual_l2, atol=1e-5)


def test_linf_norm_scales_max_abs_to_budget(linear):
    model, x, y = linear
    dirs = _mean_directions(model)
    out = perturbation_attack(model, x, y, dirs, [0.0, 0.3, 2.0], norm="linf", clip=None)
    assert out.norm == "linf"
    assert torch.allclose(out.actual_linf, torch.tensor([0.0, 0.3, 2.0]).double()[:, None].expand(3, K), atol=1e-6)
    # L2 of a direction scaled to max |d| = eps is eps * ||d||_2 / ||d||_inf
    flat = dirs.view(K, -1).double()
    ratio = flat.norm(dim=1) / flat.abs().amax(1)
    assert torch.allclose(out.actual_l2[2], 2.0 * ratio, rtol=1e-5)


def test_clipping_shrinks_the_perturbation(linear):
    model, x, y = linear
    dirs = _mean_directions(model)
    budgets = [0.0, 0.5, 2.0, 6.0]
    for norm in ("l2", "linf"):
        free = perturbation_attack(model, x, y, dirs, budgets, norm=norm, clip=None)
        clipped = perturbation_attack(model, x, y, dirs, budgets, norm=norm)
        actual = free.actual_l2 if norm == "l2" else free.actual_linf
        assert torch.allclose(actual, torch.tensor(budgets).double()[:, None].expand(-1, K), atol=1e-5)
        own = clipped.actual_l2 if norm == "l2" else clipped.actual_linf
        assert bool((own <= torch.tensor(budgets).double()[:, None] + 1e-6).all())
        assert bool((own[-1] < budgets[-1] - 0.1).all())  # clipping really cut it at the largest budget
        assert bool((clipped.actual_linf <= 1.0 + 1e-6).all())  # stimuli stay in [0, 1]
    # clip to a range that the images fill: eps = 0 gives the clean decisions
    assert clipped.success[0].eq(0).all()


def test_blend_pattern_alone_and_reference(linear):
    model, x, y = linear
    w = model[1].weight.detach()
    patterns = (10 * w).view(K, *SHAPE)  # classified as its own class
    out = blend_attack(model, x, y, patterns, alphas=(0,))
    assert isinstance(out, BlendAttack)
    assert out.success.eq(1).all() and float(out.mean[0]) == 1.0
    assert out.n_images.tolist() == [int((y != t).sum()) for t in range(K)]
    assert int(out.n_images.sum()) == (K - 1) * N  # images of the target are left out
    # against a per-sample reference, with a weak pattern so the shares are not all 0 or 1
    alphas = (0.0, 0.3, 1.0, 2.0)
    weak = 0.1 * w.view(K, *SHAPE)
    got = blend_attack(model, x, y, weak, alphas=alphas, pattern_weight=1.5)
    for a, alpha in enumerate(alphas):
        for t in range(K):
            keep = y != t
            with torch.no_grad():
                hit = model(alpha * x[keep] + 1.5 * weak[t]).argmax(1) == t
            assert float(got.success[a, t]) == pytest.approx(float(hit.double().mean()), abs=1e-12)
    assert 0.3 < float(got.mean[2]) < 0.9  # at alpha = 1 the weak pattern wins only sometimes


def test_blend_skips_nan_patterns(linear):
    model, x, y = linear
    patterns = (10 * model[1].weight.detach()).view(K, *SHAPE).clone()
    patterns[2] = float("nan")
    out = blend_attack(model, x, y, patterns, alphas=(0.0, 0.5))
    assert out.targets.tolist() == [0, 1, 3] and out.success.shape == (2, 3)
    with pytest.raises(ValueError, match="no usable row"):
        blend_attack(model, x, y, patterns, targets=[2])
    one = blend_attack(model, x, y, patterns, alphas=(0.0, 0.5), targets=3)
    assert torch.equal(one.success[:, 0], out.success[:, 2])


def test_default_targets_skip_zero_and_nan_directions(linear):
    model, x, y = linear
    dirs = _mean_directions(model).clone()
    dirs[0] = 0.0
    dirs[3, 0, 0, 0] = float("nan")
    out = perturbation_attack(model, x, y, dirs, [1.0], clip=None)
    assert out.targets.tolist() == [1, 2]
    for bad in (0, 3, [1, 3]):
        with pytest.raises(ValueError, match="no usable row"):
            perturbation_attack(model, x, y, dirs, [1.0], targets=bad)
    with pytest.raises(ValueError, match="no class"):
        perturbation_attack(model, x, y, torch.zeros(K, *SHAPE), [1.0])


def test_target_without_other_images_is_nan():
    model = _linear()
    x, _ = _data(model, n=20)
    y = torch.zeros(20, dtype=torch.long)
    out = perturbation_attack(model, x, y, _mean_directions(model), [0.0, 5.0], clip=None)
    assert out.n_images.tolist() == [0, 20, 20, 20]
    assert bool(out.success[:, 0].isnan().all()) and bool(out.actual_l2[:, 0].isnan().all())
    assert torch.equal(out.mean, out.success[:, 1:].mean(1))


# ---------------------------------------------------------------- invariance and model state


def test_batch_size_invariance(linear):
    model, x, y = linear
    dirs = _mean_directions(model)
    a = perturbation_attack(model, x, y, dirs, [0.0, 0.7, 2.0], batch_size=3)
    b = perturbation_attack(model, x, y, dirs, [0.0, 0.7, 2.0], batch_size=1000)
    assert torch.equal(a.success, b.success) and torch.equal(a.n_images, b.n_images)
    assert torch.allclose(a.actual_l2, b.actual_l2, rtol=1e-12) and torch.allclose(a.actual_linf, b.actual_linf,
                                                                                  rtol=1e-12)
    pat = 0.3 * model[1].weight.detach().view(K, *SHAPE)
    c = blend_attack(model, x, y, pat, batch_size=3)
    d = blend_attack(model, x, y, pat, batch_size=1000)
    assert torch.equal(c.success, d.success)


def test_model_left_as_found():
    model = _linear()
    model.append(nn.Dropout(0.9))
    model.train()
    model[1].eval()  # a mixed state that must come back exactly
    flags = [m.training for m in model.modules()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, _ = _data(model[:2])
    with torch.no_grad():
        y = model[:2](x).argmax(1)
    dirs = _mean_directions(model)
    first = perturbation_attack(model, x, y, dirs, [0.5, 1.0, 2.0], clip=None)
    second = perturbation_attack(model, x, y, dirs, [0.5, 1.0, 2.0], clip=None)
    ref = perturbation_attack(model[:2], x, y, dirs, [0.5, 1.0, 2.0], clip=None)
    assert torch.equal(first.success, second.success) and torch.equal(first.success, ref.success)  # dropout off
    blend_attack(model, x, y, 10 * dirs)
    with pytest.raises(ValueError, match="logits"):
        perturbation_attack(model, x, y % 3, dirs[:3], [1.0])  # 3 directions, 4 logits
    assert [m.training for m in model.modules()] == flags
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert torch.is_grad_enabled()


# ---------------------------------------------------------------- directions


def test_random_directions_are_seeded():
    like = torch.zeros(5, *SHAPE, dtype=torch.float64)
    state = torch.get_rng_state()
    a, b = random_directions(like, seed=3), random_directions(like, seed=3)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is not used
    assert a.dtype == torch.float32 and a.shape == like.shape and torch.equal(a, b)
    assert not torch.equal(a, random_directions(like, seed=4))
    assert 0.7 < float(a.std()) < 1.3
    with pytest.raises(ValueError, match="like"):
        random_directions(torch.zeros(4))
    with pytest.raises(ValueError, match="seed"):
        random_directions(like, seed=1.5)


def test_mean_image_directions_known_answer():
    images = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 4.0]]).view(3, 1, 1, 2)
    labels = torch.tensor([0, 0, 2])
    d = mean_image_directions(images, labels, num_classes=4, value_range=None)  # pixels up to 4: declared unchecked
    assert d.dtype == torch.float32 and d.shape == (4, 1, 1, 2)
    overall = torch.tensor([4.0 / 3, 4.0 / 3])
    assert torch.allclose(d[0].flatten(), torch.tensor([2.0, 0.0]) - overall)
    assert torch.allclose(d[2].flatten(), torch.tensor([0.0, 4.0]) - overall)
    assert bool(d[1].isnan().all()) and bool(d[3].isnan().all())
    with pytest.raises(ValueError, match="labels"):
        mean_image_directions(images, labels, num_classes=2, value_range=None)
    with pytest.raises(ValueError, match=r"outside the declared range \[0, 1\]"):
        mean_image_directions(images, labels, num_classes=4)
    with pytest.raises(ValueError, match="ci must be"):
        ci_directions(d)


# ---------------------------------------------------------------- errors


def test_errors(linear):
    model, x, y = linear
    dirs = _mean_directions(model)
    cases = [
        (dict(norm="l1"), "norm"),
        (dict(budgets=[1.0, -0.5]), "budgets"),
        (dict(budgets=[float("nan")]), "budgets"),
        (dict(budgets=[]), "budgets"),
        (dict(directions=dirs.view(K, 16)), "directions"),
        (dict(directions=dirs.view(K, 1, 2, 8)), "directions"),
        (dict(directions=torch.full((K, *SHAPE), float("inf"))), "inf"),
        (dict(images=x.view(N, 16)), "directions"),
        (dict(images=torch.full_like(x, float("nan"))), "finite"),
        (dict(labels=y.float()), "labels"),
        (dict(labels=y[:-1]), "labels"),
        (dict(labels=torch.full_like(y, K)), r"\[0, 4\)"),
        (dict(labels=torch.full_like(y, -1)), "labels"),
        (dict(batch_size=0), "batch_size"),
        (dict(batch_size=2.0), "batch_size"),
        (dict(clip=(1.0, 0.0)), "clip"),
        (dict(clip=5), "clip"),
        (dict(targets=[K]), "targets"),
        (dict(targets=[1, 1]), "distinct"),
        (dict(targets=[]), "targets"),
        (dict(targets=torch.tensor([0.0])), "targets"),
    ]
    base = dict(images=x, labels=y, directions=dirs, budgets=[1.0])
    for change, msg in cases:
        kw = {**base, **change}
        with pytest.raises(ValueError, match=msg):
            perturbation_attack(model, kw.pop("images"), kw.pop("labels"), kw.pop("directions"), kw.pop("budgets"),
                                **kw)
    pat = 10 * dirs
    for kw, msg in [(dict(alphas=[-0.1]), "alphas"), (dict(alphas=0.3), "alphas"),
                    (dict(pattern_weight=float("inf")), "pattern_weight"),
                    (dict(pattern_weight=True), "pattern_weight"),
                    (dict(batch_size=-1), "batch_size"), (dict(targets="1"), "targets")]:
        with pytest.raises(ValueError, match=msg):
            blend_attack(model, x, y, pat, **kw)
    with pytest.raises(ValueError, match="patterns"):
        blend_attack(model, x, y, pat.view(K, 16))


def test_doctests():
    failures, tried = doctest.testmod(attacks, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)[:2]
    assert tried > 0 and failures == 0
