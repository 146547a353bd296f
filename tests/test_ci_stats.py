"""Statistics of classification images (wna_helpers.ci_stats) against known answers."""
import math

import pytest
import torch
from torch import nn

import wna_helpers as wna
from wna_helpers.methods import ci_stats

SHAPE = (1, 12, 12)
D = math.prod(SHAPE)


class Linear(nn.Module):
    """logits = W x + b on flattened inputs, weights given."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.fc = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.fc.weight.copy_(weight)
            self.fc.bias.copy_(torch.zeros(len(weight)) if bias is None else bias)

    def forward(self, x):
        return self.fc(x.flatten(1))


def _reader(pixels: dict[int, list[int]], gain: float = 1.0) -> tuple[Linear, torch.Tensor]:
    """A 3-class model whose logit c reads only pixels[c] (each with weight +gain)."""
    w = torch.zeros(3, D)
    for c, pix in pixels.items():
        w[c, pix] = gain
    return Linear(w), (w != 0)


# ---------------------------------------------------------------- calibration and power
def test_fwer_mask_is_calibrated_and_finds_the_read_pixels():
    pixels = {0: [13, 14], 1: [70, 71], 2: [130, 131]}
    model, read = _reader(pixels)
    any_read = read.any(0)
    false_maps, maps, missed = 0, 0, 0
    for seed in range(30):
        ci = wna.classification_images(model, 12_288, noise=wna.Uniform(), input_shape=SHAPE, seed=seed,
                                       progress=False)
        sig = ci.significant(0.05).view(3, -1)
        for c in range(3):
            maps += 1
            false_maps += bool(sig[c, ~any_read].any())
            missed += int((~sig[c, read[c]]).sum())
    # the max-statistic test over the K + 1 exchangeable maps: FWER <= 1/33 per map; allow sampling error
    assert false_maps / maps <= 0.10, (false_maps, maps)
    assert missed == 0


def test_null_maps_are_standard_and_z_of_a_null_pixel_is_standard():
    model, read = _reader({0: [0], 1: [1], 2: [2]})
    ci = wna.classification_images(model, 40_960, noise=wna.Uniform(), input_shape=SHAPE, progress=False)
    z = ci_stats.loo_zscores(ci.images, ci.null_images)
    assert z.shape == (33, 3, *SHAPE)
    free = z.view(33, 3, -1)[:, :, 3:]
    # leave-one-out z over 32 maps is t-like with 31 degrees of freedom: std about 1.03
    assert 0.95 < float(free.std()) < 1.12
    assert abs(float(free.mean())) < 0.05
    assert torch.equal(ci.zmap, z[0]) or torch.allclose(ci.zmap, z[0], atol=1e-9)
    # the read pixels stand out in the z-map of their class
    assert float(ci.zmap.view(3, -1)[0, 0]) > 10


def test_cluster_test_finds_a_weak_block_that_pixels_miss():
    block = [r * 12 + c for r in range(4, 8) for c in range(4, 8)]      # a 4 x 4 block
    model, read = _reader({0: block, 1: [140], 2: [141]}, gain=1.0)
    model.fc.weight.data[0] *= 0.05                                    # weak: pixels alone hardly pass
    ci = wna.classification_images(model, 12_288, noise=wna.Uniform(), input_shape=SHAPE, seed=3, progress=False)
    pixel_hits = int(ci.significant().view(3, -1)[0, block].sum())
    test = ci.clusters(alpha=0.05, threshold=2.0)
    hits = test.mask.view(3, -1)[0]
    assert int(hits[block].sum()) >= 12 and int(hits[block].sum()) > pixel_hits
    others = torch.ones(D, dtype=torch.bool)
    others[block] = False
    assert int(hits[others].sum()) <= 4                                 # a cluster may spill a pixel or two
    assert test.labels.shape == (3, *SHAPE) and len(test.mass) == 3
    assert all(torch.all(m[:-1] >= m[1:]) for m in test.mass)          # ordered by mass
    assert float(test.p_values[0][0]) <= 0.05


def test_info_separates_real_from_chance_maps():
    model, _ = _reader({0: [13, 14], 1: [70, 71], 2: [130, 131]})
    ci = wna.classification_images(model, 40_960, noise=wna.Uniform(), input_shape=SHAPE, progress=False)
    assert bool((ci.info > 5).all()), ci.info
    # a null map scored against the other nulls is chance: its score is small
    chance = torch.stack([ci_stats.info_scores(ci.null_images[k], torch.cat([ci.null_images[:k],
                                                                             ci.null_images[k + 1:]]))
                          for k in range(8)])
    assert float(chance.abs().max()) < 4 and abs(float(chance.mean())) < 1.0, chance
    # a class that took every sample has no null spread: its score is undefined, not infinite
    w = torch.zeros(3, D)
    all_one = wna.classification_images(Linear(w, bias=torch.tensor([0.0, 1.0, 0.0])), 8192, noise=wna.Uniform(),
                                        input_shape=SHAPE, progress=False)
    assert torch.isnan(all_one.info).all()


# ---------------------------------------------------------------- logit images, reliability
def test_linear_logit_images_are_the_weight_rows():
    torch.manual_seed(1)
    model = wna.build_model("logreg", seed=0)
    ci = wna.classification_images(model, 100_000, noise=wna.Uniform(), progress=False)
    w = model.fc1.weight.detach().double()
    rs = [wna.pearson(ci.logit_images[c], w[c]) for c in range(10)]
    assert min(rs) >= 0.98, rs
    # the scale too: regression coefficients of an exactly linear logit are its weights
    slope = float((ci.logit_images.view(10, -1) * w).sum() / w.square().sum())
    assert abs(slope - 1) < 0.05
    # every class has a logit image, argmax-starved or not
    assert torch.isfinite(ci.logit_images).all()


def _analytic_split_half(n_half: int, d: int) -> float:
    """Expected split-half r for f(x) = (w.x, -w.x), |w| = 1, sum(w) = 0, N(0, 1) noise, each half's
    CIs minus that half's mean stimulus: signal sum (2/pi) w^2 = 2/pi; noise per pixel var/(2m)
    with m = n_half / 2 samples per class and var = 1 - (2/pi) w_j^2."""
    signal = 2 / math.pi
    noise = (d - 2 / math.pi) / n_half
    return signal / (signal + noise)


def test_split_half_reliability_matches_the_analytic_value():
    torch.manual_seed(0)
    w = torch.randn(D)
    w = (w - w.mean())
    w = w / w.norm()
    model = Linear(torch.stack([w, -w]))
    rs = []
    for seed in range(12):
        ci = wna.classification_images(model, 2048, noise=wna.Gaussian(), input_shape=SHAPE, chunk_size=512,
                                       seed=seed, null_permutations=0, progress=False)
        rs.append(ci.split_half)
    r = torch.stack(rs).mean(0)
    expected = _analytic_split_half(1024, D)
    assert abs(float(r[0]) - expected) < 0.04 and abs(float(r[1]) - expected) < 0.04, (r, expected)
    rel = ci_stats.spearman_brown(torch.tensor(expected))
    assert abs(float(torch.stack([ci_stats.spearman_brown(x) for x in rs]).mean()) - float(rel)) < 0.05
    # the prophecy inverts Spearman-Brown: reliability R at n needs n itself
    assert torch.allclose(ci_stats.samples_needed(torch.tensor([0.9]), 1000, 0.9), torch.tensor([1000.0],
                          dtype=torch.float64))


def test_until_reliability_stops_at_a_milestone_independent_of_batch_size():
    torch.manual_seed(0)
    w = torch.randn(D)
    model = Linear(torch.stack([w, -w]))
    a = wna.classification_images(model, 400_000, noise=wna.Gaussian(), input_shape=SHAPE, until_reliability=0.995,
                                  batch_size=1000, progress=False)
    b = wna.classification_images(model, 400_000, noise=wna.Gaussian(), input_shape=SHAPE, until_reliability=0.995,
                                  batch_size=7000, progress=False)
    assert a.stopped_early and a.n_samples < 400_000 and a.n_samples % (4 * 4096) == 0
    assert a.n_samples == b.n_samples and torch.equal(a.counts, b.counts)
    assert bool((a.reliability >= 0.995).all())
    # one milestone earlier it was not reached: the run stopped at the first that was
    earlier = wna.classification_images(model, a.n_samples - 4 * 4096, noise=wna.Gaussian(), input_shape=SHAPE,
                                        progress=False)
    assert bool((earlier.reliability < 0.995).any())
    # a target the cap cannot reach runs to the cap
    c = wna.classification_images(model, 8192, noise=wna.Gaussian(), input_shape=SHAPE, until_reliability=0.99,
                                  progress=False)
    assert not c.stopped_early and c.n_samples == 8192 and int(c.counts.sum()) == 8192


# ---------------------------------------------------------------- invariances
def _same_stats(a, b, atol=1e-6):
    assert torch.equal(a.counts, b.counts) and torch.equal(a.odd_counts, b.odd_counts)
    for name in ("null_images", "odd_sums", "logit_images"):
        x, y = getattr(a, name), getattr(b, name)
        assert torch.allclose(x, y, rtol=0, atol=atol, equal_nan=True), name


def test_batch_size_invariance_of_the_statistics():
    model = wna.build_model("paper_cnn", seed=0)
    a = wna.classification_images(model, 12_345, noise=wna.Uniform(), batch_size=1000, progress=False)
    b = wna.classification_images(model, 12_345, noise=wna.Uniform(), batch_size=5000, progress=False)
    _same_stats(a, b)


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("until", [None, 0.998])  # 0.998 stops at 114,688 of 200,000
def test_resume_equals_uninterrupted(tmp_path, until):
    torch.manual_seed(0)
    w = torch.randn(D)
    model = Linear(torch.stack([w, -w, 0.5 * w]))
    kw = dict(noise=wna.Uniform(), input_shape=SHAPE, batch_size=1000, until_reliability=until, progress=False)
    ckpt = tmp_path / "run.ckpt"
    calls = {"n": 0}

    def stop_after(mod, inp):
        calls["n"] += len(inp[0]) > 64
        if calls["n"] > 30:
            raise Interrupt
    h = model.register_forward_pre_hook(stop_after)
    with pytest.raises(Interrupt):
        wna.classification_images(model, 200_000, checkpoint=ckpt, checkpoint_every=3, **kw)
    h.remove()
    assert ckpt.exists() and torch.load(ckpt)["done"] % 4096 == 0
    resumed = wna.classification_images(model, 200_000, checkpoint=ckpt, **kw)
    full = wna.classification_images(model, 200_000, **kw)
    assert full.stopped_early == (until is not None)
    assert resumed.n_samples == full.n_samples and resumed.stopped_early == full.stopped_early
    _same_stats(resumed, full, atol=1e-9)
    assert torch.allclose(resumed.sums, full.sums, atol=1e-9)


# ---------------------------------------------------------------- error paths
@pytest.mark.parametrize("kw, match", [
    (dict(null_permutations=-1), "null_permutations must be an integer >= 0"),
    (dict(null_permutations=2.5), "null_permutations must be an integer >= 0"),
    (dict(until_reliability=1.5), r"until_reliability must be a number in \(0, 1\)"),
    (dict(until_reliability=True), r"until_reliability must be a number in \(0, 1\)"),
])
def test_bad_arguments_fail_before_work(kw, match):
    model = wna.build_model("logreg", seed=0)
    calls = []
    model.register_forward_pre_hook(lambda m, i: calls.append(1))
    with pytest.raises(ValueError, match=match):
        wna.classification_images(model, 1000, progress=False, **kw)
    assert not calls


def test_statistics_need_nulls_and_attainable_alpha():
    model = wna.build_model("logreg", seed=0)
    none = wna.classification_images(model, 4096, noise=wna.Uniform(), null_permutations=0, progress=False)
    with pytest.raises(ValueError, match="null_permutations >= 3"):
        none.zmap
    with pytest.raises(ValueError, match="null_permutations >= 3"):
        none.significant()
    assert torch.isfinite(none.logit_images).all()                     # the rest still works
    ci = wna.classification_images(model, 4096, noise=wna.Uniform(), null_permutations=9, progress=False)
    with pytest.raises(ValueError, match=r"below the smallest p-value 9 permutations can give \(1/10"):
        ci.significant(0.05)
    with pytest.raises(ValueError, match=r"alpha must be a number in \(0, 1\)"):
        ci.significant(1.5)
    with pytest.raises(ValueError, match="threshold must be a positive z value"):
        ci.clusters(alpha=0.1, threshold=-1)
    assert ci.significant(0.1).shape == ci.images.shape


def test_convergence_snapshots_carry_the_statistics():
    """The convergence run's final snapshot is classification_images of that n, statistics included;
    its earlier snapshots keep split halves (chunks ended by then)."""
    model = wna.build_model("logreg", seed=0)
    sizes = [3000, 8192, 20_000]
    conv = wna.ci_convergence(model, sizes, noise=wna.Uniform(), batch_size=1500, progress=False)
    one = wna.classification_images(model, 20_000, noise=wna.Uniform(), progress=False)
    final = conv.snapshot(20_000)
    _same_stats(final, one)
    assert torch.allclose(final.reliability, one.reliability, atol=1e-9, equal_nan=True)
    mid = wna.classification_images(model, 8192, noise=wna.Uniform(), progress=False)
    assert torch.allclose(conv.snapshot(8192).odd_sums, mid.odd_sums, atol=1e-9)
    rel = conv.reliability()
    assert rel.shape == (3, 10) and torch.isnan(rel[0]).all()         # no odd chunk has ended by 3,000
    mean = conv.mean_reliability()
    w = conv.counts[-1].double()
    ok = ~torch.isnan(rel[-1])
    assert torch.isnan(mean[0]) and float(mean[-1]) == pytest.approx(float((rel[-1][ok] * w[ok]).sum() / w[ok].sum()))
    assert conv.snapshot(3000).null_images is None and final.null_images.shape == (32, 10, 1, 28, 28)


def test_a_class_that_takes_everything_has_no_z_and_no_significant_pixel():
    """Permuting labels that are all equal changes nothing: the null CIs equal the CI exactly, so
    z is undefined (NaN), not float32 rounding divided by a rounding-sized spread."""
    w = torch.zeros(3, D)
    ci = wna.classification_images(Linear(w, bias=torch.tensor([0.0, 1.0, 0.0])), 10_000, noise=wna.Uniform(),
                                   input_shape=SHAPE, progress=False)
    assert torch.equal(ci.null_images[:, 1], ci.images[1].expand_as(ci.null_images[:, 1]))
    assert torch.isnan(ci.zmap[1]).all() and not ci.significant()[1].any()
    assert not ci.clusters().mask.any()


# ---------------------------------------------------------------- second-order CIs
class Energy(nn.Module):
    """Class 1 when (w.x)^2 is above its median under N(0, 1) noise: the classes differ in variance
    along w, not in mean."""

    def __init__(self, w):
        super().__init__()
        self.register_buffer("w", w / w.norm())

    def forward(self, x):
        e = (x.flatten(1) @ self.w).square()
        return torch.stack([torch.full_like(e, 0.4549), e], 1)      # median of chi^2_1


def test_second_order_ci_finds_an_energy_direction_the_mean_misses():
    torch.manual_seed(0)
    w = torch.randn(D)
    model = Energy(w)
    ci = wna.classification_images(model, 40_000, noise=wna.Gaussian(), input_shape=SHAPE, second_order=True,
                                   null_permutations=0, batch_size=3000, progress=False)
    assert abs(wna.pearson(ci.images[1], w)) < 0.2                     # the mean CI shows nothing
    so = ci.second_order(3)
    assert so.eigenimages.shape == (2, 3, *SHAPE) and so.eigenvalues.shape == (2, 3)
    # class 1: more variance along w; class 0: less (chi^2_1 above / below the median)
    assert so.eigenvalues[1, 0] > 0.5 and so.eigenvalues[0, 0] < -0.5
    assert abs(wna.pearson(so.eigenimages[1, 0], w)) > 0.95 and abs(wna.pearson(so.eigenimages[0, 0], w)) > 0.95
    assert abs(float(so.eigenvalues[1, 1])) < 0.2                      # nothing else
    other = wna.classification_images(model, 40_000, noise=wna.Gaussian(), input_shape=SHAPE, second_order=True,
                                      null_permutations=0, batch_size=1024, progress=False)
    assert torch.allclose(other.outer_sums, ci.outer_sums, rtol=1e-5, atol=1e-3)  # float32 within a piece
    with pytest.raises(ValueError, match="second_order=True"):
        wna.classification_images(model, 4096, noise=wna.Gaussian(), input_shape=SHAPE,
                                  progress=False).second_order()
