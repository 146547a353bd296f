"""Spike-triggered covariance: known answers (energy unit, rectified linear unit), a float64
brute-force reference, agreement with the STA, run invariances and error paths."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import wna_helpers as wna
from wna_helpers.methods.sta import ReceptiveField
from wna_helpers.methods.stc import SpikeTriggeredCovariance, null_offsets, sample_roll, spike_triggered_covariance

SIDE = 16  # 12 x 12 pooled positions of a 5 x 5 filter: room for 3 non-overlapping null shifts


class Square(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


class EnergyUnit(nn.Module):
    """``out = (w1 . x)^2 + (w2 . x)^2`` per position, then a linear read-out to 2 classes."""

    def __init__(self, filters: torch.Tensor, side: int = SIDE) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 5, bias=False)
        self.square = Square()
        self.out = nn.Conv2d(2, 1, 1, bias=False)
        self.fc = nn.Linear((side - 4) ** 2, 2)
        with torch.no_grad():
            self.conv1.weight.copy_(filters[:, None])
            self.out.weight.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.out(self.square(self.conv1(x))).flatten(1))


class LinearUnit(nn.Module):
    """One 5 x 5 filter without bias, ReLU, linear read-out."""

    def __init__(self, w: torch.Tensor, side: int = SIDE) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 1, 5, bias=False)
        self.relu = nn.ReLU()
        self.fc = nn.Linear((side - 4) ** 2, 2)
        with torch.no_grad():
            self.conv1.weight.copy_(w[None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu(self.conv1(x)).flatten(1))


class Deep(nn.Module):
    """Two input channels, padding, pooling and a second conv: RF 8 x 8, stride 2, offset -1."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 3, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(3, 2, 3)
        self.fc = nn.Linear(2 * 16 * 16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv2(self.pool(self.relu1(self.conv1(x))))).flatten(1))


def _orthonormal(n: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(25, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q.T.float().view(n, 5, 5)


@pytest.fixture(scope="module")
def energy() -> tuple[SpikeTriggeredCovariance, torch.Tensor]:
    filters = _orthonormal(2, seed=1)
    stc = spike_triggered_covariance(EnergyUnit(filters), "out", 30_000, noise=wna.Gaussian(),
                                     input_shape=(1, SIDE, SIDE), null_shifts=3, position_stride=1, progress=False)
    return stc, filters


def test_energy_unit_recovers_its_quadrature_pair(energy):
    stc, filters = energy
    d = 25
    assert stc.covariance.shape == (1, d, d) and stc.eigenvectors.shape == (1, d, 1, 5, 5)
    assert stc.null_eigenvalues.shape == (3, 1, d) and stc.positions == 12 * 12
    # STA ~ 0 against unit-norm filters
    assert stc.sta.norm() < 0.05
    # a = z1^2 + z2^2 with z ~ N(0, I): variance 2 along w1 and w2, so STC eigenvalues 1, 1, then 0
    top = stc.eigenvalues[0, :2]
    assert torch.allclose(top, torch.ones(2, dtype=torch.float64), atol=0.05)
    low, high = stc.null_band
    assert (top > 20 * high[0, 0]).all() and high[0, 0] < 0.05 and low[0, -1] > -0.05
    assert stc.eigenvalues[0, 2:].abs().max() < 0.05
    assert stc.significant_eigen(0.5)[0].tolist() == [True, True] + [False] * (d - 2)
    # span of the two leading eigenvectors = span{w1, w2}
    basis = stc.eigenvectors[0, :2].reshape(2, d)
    proj = filters.reshape(2, d).double() @ basis.T
    assert (proj.norm(dim=1) > 0.98).all()
    # descending order, orthonormal eigenvectors with a positive largest-magnitude pixel
    assert (stc.eigenvalues.diff(dim=1) <= 0).all()
    vecs = stc.eigenvectors[0].reshape(d, d)
    assert torch.allclose(vecs @ vecs.T, torch.eye(d, dtype=torch.float64), atol=1e-8)
    assert (vecs.gather(1, vecs.abs().argmax(1, keepdim=True)) > 0).all()
    # STC is symmetric; the windows' covariance is the identity of white N(0, 1) noise
    assert torch.allclose(stc.covariance, stc.covariance.transpose(1, 2))
    assert torch.allclose(stc.noise_covariance, torch.eye(d, dtype=torch.float64), atol=0.02)


def test_rectified_linear_unit_has_one_suppressive_direction():
    """a = ReLU(w . x): the STA is w; the variance along w shrinks to 2 - pi/2 (eigenvalue 1 - pi/2),
    every other direction is independent of a (eigenvalues within the null band)."""
    w = torch.randn(5, 5, generator=torch.Generator().manual_seed(2))
    stc = spike_triggered_covariance(LinearUnit(w), "conv1", 30_000, noise=wna.Gaussian(),
                                     input_shape=(1, SIDE, SIDE), null_shifts=3, position_stride=1, progress=False)
    assert wna.pearson(stc.sta, w) > 0.98
    assert stc.eigenvalues[0, -1] == pytest.approx(1 - math.pi / 2, abs=0.03)
    assert abs(wna.pearson(stc.eigenvectors[0, -1], w, centered=False)) > 0.99
    rest = stc.eigenvalues[0, :-1]
    low, high = stc.null_band
    scale = stc.noise_covariance.diagonal().mean()
    assert rest.abs().max() < 0.02 * scale
    assert rest.max() < high[0, 0] + 0.5 * (high[0, 0] - low[0, -1])
    assert rest.min() > low[0, -1] - 0.5 * (high[0, 0] - low[0, -1])
    assert stc.significant_eigen(0.5)[0].nonzero().flatten().tolist() == [24]


@pytest.mark.parametrize("stride", [1, 3])
def test_equals_float64_brute_force(stride):
    """Multi-channel input, padding, pooling, stride 2, a partial last block, two null shifts, and
    every position or every third one along each axis."""
    torch.manual_seed(0)
    model = Deep()
    with torch.no_grad():
        model.conv2.bias.copy_(torch.tensor([0.5, -100.0]))  # channel 1 never fires: NaN statistics
    n = 40
    x = torch.rand(n, 2, 36, 36)
    stc = spike_triggered_covariance(model, "conv2", noise=wna.Images(x), input_shape=(2, 36, 36), null_shifts=2,
                                     batch_size=15, position_stride=stride, progress=False)
    rf = stc.rf
    assert (rf.size, rf.jump, rf.offset) == ((8, 8), (2, 2), (-1, -1))
    side = len(range(0, 14, stride))
    assert stc.positions == side * side
    if stride == 1:
        assert stc.null_offsets == ((0, 7), (7, 0))
    with torch.no_grad():
        a = torch.relu(model.conv2(model.pool(model.relu1(model.conv1(x)))))[:, :, 1:15:stride, 1:15:stride].double()
    win = x[:, :, 1:, 1:].unfold(2, 8, 2).unfold(3, 8, 2)[:, :, ::stride, ::stride]   # (N, C, side, side, 8, 8)
    win = win.permute(0, 2, 3, 1, 4, 5).reshape(n, side * side, -1).double()  # (N, P, D), D in (C, h, w) order
    cols = [a] + [torch.roll(a, s, dims=(2, 3)) for s in stc.null_offsets]
    wts = torch.cat([c.flatten(2).transpose(1, 2) for c in cols] + [torch.ones(n, side * side, 1, dtype=torch.float64)], 2)
    s0 = wts.sum((0, 1))
    mean = torch.einsum("npk,npi->ki", wts, win) / s0[:, None]
    cov = torch.einsum("npk,npi,npj->kij", wts, win, win) / s0[:, None, None] - mean[:, :, None] * mean[:, None]
    ref = (cov[:-1] - cov[-1]).view(3, 2, 128, 128)
    assert torch.allclose(stc.weight, s0[:2], rtol=1e-6) and stc.weight[1] == 0
    assert torch.allclose(stc.noise_covariance, cov[-1], atol=1e-6)
    assert torch.allclose(stc.sta.view(2, -1)[0], mean[0], atol=1e-6)
    assert torch.allclose(stc.covariance[0], ref[0, 0], atol=1e-6)
    assert torch.allclose(stc.eigenvalues[0], torch.linalg.eigvalsh(ref[0, 0]).flip(-1), atol=1e-6)
    assert torch.allclose(stc.null_eigenvalues[:, 0], torch.linalg.eigvalsh(ref[1:, 0]).flip(-1), atol=1e-6)
    for t in (stc.sta[1], stc.covariance[1], stc.eigenvalues[1], stc.eigenvectors[1], stc.null_eigenvalues[:, 1]):
        assert t.isnan().all()
    assert not stc.significant_eigen()[1].any()


def test_sta_equals_spike_triggered_average():
    model = wna.build_model("paper_cnn", seed=0)
    stc = spike_triggered_covariance(model, "conv1", 3000, null_shifts=0, batch_size=1000, position_stride=1,
                                     progress=False)
    sta = wna.spike_triggered_average(model, "conv1", 3000, batch_size=1000, progress=False)
    assert stc.sta.shape == sta.pooled.shape == (20, 1, 5, 5) and stc.positions == sta.positions
    # two float32 summations in different orders (the STA through the weight-gradient kernel, the STC through
    # its window product), each held within 1e-6 of its float64 reference by its own test: they may differ by 2e-6
    assert torch.allclose(stc.sta, sta.pooled, rtol=0, atol=2e-6 * float(sta.pooled.abs().max()))
    assert torch.allclose(stc.weight, sta.pooled_weight, rtol=2e-6)
    assert stc.null_eigenvalues.shape == (0, 20, 25) and stc.stimulus == sta.stimulus
    with pytest.raises(ValueError, match="null_shifts > 0"):
        stc.significant_eigen()


def test_deeper_layer_runs_without_null():
    model = wna.build_model("paper_cnn", seed=0)
    with pytest.raises(ValueError, match="null_shifts=0"):
        spike_triggered_covariance(model, "conv2", 64, progress=False)
    stc = spike_triggered_covariance(model, "conv2", 64, null_shifts=0, progress=False)
    assert stc.covariance.shape == (50, 196, 196) and stc.eigenvectors.shape == (50, 196, 1, 14, 14)
    assert stc.eigenvalues.shape == (50, 196) and stc.null_eigenvalues.shape == (0, 50, 196)


def test_batch_size_and_resume_invariance(tmp_path):
    model = EnergyUnit(_orthonormal(2, seed=3))
    model.train()
    kw = dict(noise=wna.Gaussian(), input_shape=(1, SIDE, SIDE), progress=False)
    a = spike_triggered_covariance(model, "out", 6000, batch_size=333, **kw)
    b = spike_triggered_covariance(model, "out", 6000, batch_size=1024, **kw)
    assert torch.allclose(a.covariance, b.covariance, rtol=0, atol=1e-6)
    assert torch.allclose(a.null_eigenvalues, b.null_eigenvalues, rtol=0, atol=1e-6)
    assert torch.allclose(a.sta, b.sta, rtol=0, atol=1e-6)

    # batches of whole chunks: a checkpoint falls on a batch end (and a chunk end) every 2 batches
    kw = dict(kw, chunk_size=1000)
    ckpt = tmp_path / "stc.ckpt"
    calls = {"n": 0}

    class Interrupt(Exception):
        pass

    def stop_after_three(mod, inp):
        calls["n"] += len(inp[0]) == 1000  # batches, not the probes
        if calls["n"] > 3:
            raise Interrupt

    h = model.register_forward_pre_hook(stop_after_three)
    with pytest.raises(Interrupt):
        spike_triggered_covariance(model, "out", 6000, batch_size=1000, checkpoint=ckpt, checkpoint_every=2, **kw)
    h.remove()
    assert torch.load(ckpt)["done"] in (2000, 3000)  # the engine checkpoints at chunk ends once one is due
    resumed = spike_triggered_covariance(model, "out", 6000, batch_size=1000, checkpoint=ckpt, **kw)
    full = spike_triggered_covariance(model, "out", 6000, batch_size=1000, **kw)
    assert torch.allclose(resumed.covariance, full.covariance, rtol=0, atol=1e-12)
    assert torch.allclose(resumed.null_eigenvalues, full.null_eigenvalues, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="belongs to another job"):  # another null is another job
        spike_triggered_covariance(model, "out", 6000, batch_size=1000, checkpoint=ckpt, null_shifts=1, **kw)
    # left as found
    assert model.training and not model._forward_hooks and not model.out._forward_hooks
    assert not model._forward_pre_hooks and all(p.requires_grad for p in model.parameters())


def test_null_offsets_do_not_overlap():
    rf = ReceptiveField((5, 5), (1, 1), (0, 0), (24, 24))
    assert null_offsets(rf, (24, 24), 0) == ()
    assert null_offsets(rf, (24, 24), 1) == ((0, 12),)
    for s in range(1, 16):
        shifts = [(0, 0), *null_offsets(rf, (24, 24), s)]
        assert len(set(shifts)) == s + 1
        for i, (r1, c1) in enumerate(shifts):
            for r2, c2 in shifts[:i]:
                dr, dc = (r1 - r2) % 24, (c1 - c2) % 24
                assert min(dr, 24 - dr) >= 5 or min(dc, 24 - dc) >= 5
    with pytest.raises(ValueError, match="at most 15"):
        null_offsets(rf, (24, 24), 16)
    assert null_offsets(ReceptiveField((4, 4), (2, 2), (0, 0), (9, 3)), (9, 3), 3) == ((2, 0), (4, 0), (6, 0))


def test_errors_before_any_heavy_work():
    model = wna.build_model("paper_cnn", seed=0)

    def no_batches(mod, inp):  # the probes run 1 or 2 zero images; a real batch is an error here
        assert len(inp[0]) <= 2, "heavy work started before the arguments were checked"

    h = model.register_forward_pre_hook(no_batches)
    try:
        with pytest.raises(ValueError, match="not a convolution"):
            spike_triggered_covariance(model, "fc1", 10 ** 9)
        with pytest.raises(ValueError, match="has no layer 'conv9'"):
            spike_triggered_covariance(model, "conv9", 10 ** 9)
        for bad in (-1, 1.5, True, "2"):
            with pytest.raises(ValueError, match="null_shifts must be a non-negative integer"):
                spike_triggered_covariance(model, "conv1", 10 ** 9, null_shifts=bad)
        with pytest.raises(ValueError, match=r"at most 15 .*null_shifts=0"):
            spike_triggered_covariance(model, "conv1", 10 ** 9, null_shifts=16)
        with pytest.raises(ValueError, match="n_samples"):
            spike_triggered_covariance(model, "conv1", 0)
        for bad in (0, 2.0, True):
            with pytest.raises(ValueError, match="position_stride must be a positive integer or None"):
                spike_triggered_covariance(model, "conv1", 10 ** 9, position_stride=bad)
    finally:
        h.remove()


def test_default_stride_pools_a_sub_grid_with_the_same_answer():
    """The default pools every third position of a 5x5 layer (half its window); the rectified linear
    unit's suppressive direction and eigenvalue come out as from every position."""
    w = torch.randn(5, 5, generator=torch.Generator().manual_seed(2))
    kw = dict(noise=wna.Gaussian(), input_shape=(1, SIDE, SIDE), null_shifts=1, progress=False)
    sub = spike_triggered_covariance(LinearUnit(w), "conv1", 30_000, **kw)
    assert sub.positions == 4 * 4                                     # rows/cols 0, 3, 6, 9 of 12
    assert sub.eigenvalues[0, -1] == pytest.approx(1 - math.pi / 2, abs=0.04)
    assert abs(wna.pearson(sub.eigenvectors[0, -1], w)) > 0.98


def test_sample_rolled_nulls_equal_float64_brute_force():
    """Nulls that pair each window with the activations of another stimulus of the batch: a partial last batch
    (the rolls wrap inside it, never onto the sample itself) and a last batch of one sample (it adds nothing)."""
    torch.manual_seed(0)
    model = Deep()
    n, bs, t = 31, 15, 3                                     # batches of 15, 15 and 1
    x = torch.rand(n, 2, 36, 36)
    stc = spike_triggered_covariance(model, "conv2", noise=wna.Images(x), input_shape=(2, 36, 36), null_shifts=0,
                                     null_samples=t, batch_size=bs, position_stride=3, progress=False)
    assert stc.null_sample_shifts == (1, 2, 3) and stc.null_eigenvalues.shape[0] == t
    with torch.no_grad():
        a = torch.relu(model.conv2(model.pool(model.relu1(model.conv1(x)))))[:, :, 1:15:3, 1:15:3].double()
    win = x[:, :, 1:, 1:].unfold(2, 8, 2).unfold(3, 8, 2)[:, :, ::3, ::3]
    side = win.shape[2]
    win = win.permute(0, 2, 3, 1, 4, 5).reshape(n, side * side, -1).double()
    cols = [a]
    for shift in (1, 2, 3):
        parts = []
        for lo in range(0, n, bs):
            blk = a[lo:lo + bs]
            r = sample_roll(shift, len(blk))
            parts.append(torch.roll(blk, -r, dims=0) if r else torch.zeros_like(blk))
        cols.append(torch.cat(parts))
    assert sample_roll(1, 1) == 0 and sample_roll(20, 15) == 6 and sample_roll(3, 15) == 3
    wts = torch.cat([c.flatten(2).transpose(1, 2) for c in cols] + [torch.ones(n, side * side, 1, dtype=torch.float64)], 2)
    s0 = wts.sum((0, 1))
    mean = torch.einsum("npk,npi->ki", wts, win) / s0[:, None]
    cov = torch.einsum("npk,npi,npj->kij", wts, win, win) / s0[:, None, None] - mean[:, :, None] * mean[:, None]
    ref = (cov[:-1] - cov[-1]).view(1 + t, 2, 128, 128)
    assert torch.allclose(stc.covariance, ref[0], atol=1e-6, equal_nan=True)
    live = ~ref[1:, 0].isnan().any()
    assert live and torch.allclose(stc.null_eigenvalues[:, 0], torch.linalg.eigvalsh(ref[1:, 0]).flip(-1), atol=1e-6)
    with pytest.raises(ValueError, match="null_samples must be a non-negative integer, got -1"):
        spike_triggered_covariance(model, "conv2", noise=wna.Images(x), input_shape=(2, 36, 36), null_samples=-1)


def test_with_39_sample_nulls_only_the_filter_leaves_the_band_of_a_rectified_linear_unit():
    """Gaussian noise, a = ReLU(w . x): the filter's eigenvalue lies far below every one of 39 independent nulls;
    none of the 24 others leaves the band by more than half its width."""
    w = torch.randn(5, 5, generator=torch.Generator().manual_seed(2))
    stc = spike_triggered_covariance(LinearUnit(w), "conv1", 20_000, noise=wna.Gaussian(), input_shape=(1, SIDE, SIDE),
                                     null_shifts=0, null_samples=39, position_stride=1, progress=False)
    assert stc.null_eigenvalues.shape == (39, 1, 25)
    assert stc.significant_eigen(0.5)[0].nonzero().flatten().tolist() == [24]
