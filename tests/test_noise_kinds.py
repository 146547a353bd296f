"""Noise kinds beyond white noise: clipped and matched Gaussians, Gabor noise, sinusoid noise."""
import math

import pytest
import torch
from torch import nn

import wna_helpers as wna
from wna_helpers.engine import structured_noise as sn

from conftest import needs_data

CPU = torch.device("cpu")


def draw(noise, n, shape=(1, 28, 28), seed=0, dtype=torch.float32):
    return noise.sample(torch.Generator().manual_seed(seed), (n, *shape), CPU, dtype)


def smooth_images(n=150, seed=0):
    """Synthetic 28x28 images in [0, 1]: blurred random blobs (structure for the dictionary to fit)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=g)
    x = nn.functional.avg_pool2d(x, 5, stride=1, padding=2)
    return ((x - x.amin()) / (x.amax() - x.amin())).float()


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    return wna.GaborNoise.fit(smooth_images(), n_components=40, cache_dir=tmp_path_factory.mktemp("noise"))


# ---------------------------------------------------------------- Gaussian: clip and matched
def test_plain_gaussian_unchanged():
    g = wna.Gaussian()
    assert g.describe() == {"kind": "gaussian", "mean": 0.0, "std": 1.0}
    assert wna.Gaussian(0.5, 2.0).describe() == {"kind": "gaussian", "mean": 0.5, "std": 2.0}
    assert g.label() == "Gaussian noise N(0, 1)" and wna.Gaussian(0, 2).label() == "Gaussian noise N(0, 2²)"
    ref = torch.randn((7, 1, 4, 4), generator=torch.Generator().manual_seed(3))
    assert torch.equal(draw(g, 7, (1, 4, 4), seed=3), ref)
    assert torch.equal(draw(wna.Gaussian(1.0, 2.0), 7, (1, 4, 4), seed=3), ref * 2 + 1)


def test_gaussian_clip():
    g = wna.Gaussian(0.0, 1.0, clip=(-0.5, 0.5))
    x = draw(g, 500, (1, 8, 8))
    ref = torch.randn((500, 1, 8, 8), generator=torch.Generator().manual_seed(0)).clamp(-0.5, 0.5)
    assert torch.equal(x, ref)
    assert float(x.min()) == -0.5 and float(x.max()) == 0.5
    assert g.describe() == {"kind": "gaussian", "mean": 0.0, "std": 1.0, "clip": [-0.5, 0.5]}
    assert g.describe() != wna.Gaussian().describe()
    assert g.label() == "Gaussian noise N(0, 1) clipped to [-0.5, 0.5]"
    assert g.clip == (-0.5, 0.5) and isinstance(g.clip[0], float)


def test_gaussian_matched_moments_and_range():
    # half the pixels 0.25, half 0.75: mean 0.5, std 0.25 (population), range [0.25, 0.75]
    img = torch.full((4, 1, 3, 3), 0.25)
    img[:2] = 0.75
    g = wna.Gaussian.matched(img)
    assert g.mean == pytest.approx(0.5, abs=1e-12) and g.std == pytest.approx(0.25, abs=1e-12)
    assert g.clip == (0.25, 0.75)
    assert "clipped to [0.25, 0.75]" in g.label()
    x = draw(g, 2000, (1, 3, 3))
    assert float(x.min()) == 0.25 and float(x.max()) == 0.75
    # random images: float64 moments of all pixels
    img = torch.rand(50, 1, 6, 6) * 0.8 + 0.1
    g = wna.Gaussian.matched(img, clip=False)
    d = img.double()
    assert g.mean == pytest.approx(float(d.mean()), abs=1e-12)
    assert g.std == pytest.approx(float(d.std(correction=0)), abs=1e-12)
    assert g.clip is None and "clip" not in g.describe()


@pytest.mark.parametrize("make, match", [
    (lambda: wna.Gaussian(clip=(1.0, 0.0)), "low < high"),
    (lambda: wna.Gaussian(clip=(0.0, 0.0)), "low < high"),
    (lambda: wna.Gaussian(clip=(0.0,)), "low < high"),
    (lambda: wna.Gaussian(clip=(0.0, float("nan"))), "low < high"),
    (lambda: wna.Gaussian(clip="ab"), "low < high"),
    (lambda: wna.Gaussian.matched(torch.full((3, 1, 2, 2), 0.5)), "constant"),
    (lambda: wna.Gaussian.matched(torch.zeros(0, 1, 2, 2)), "non-empty floating-point"),
    (lambda: wna.Gaussian.matched(torch.ones(3, 4, dtype=torch.int64)), "non-empty floating-point"),
    (lambda: wna.Gaussian.matched(torch.tensor([0.0, float("inf")])), "NaN or infinite"),
])
def test_gaussian_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# ---------------------------------------------------------------- the Gabor dictionary
def test_gabor_dictionary_shape_and_range():
    d = wna.gabor_dictionary()
    assert d.shape == (960, 784) and d.dtype == torch.float32
    assert float(d.min()) == 0.0 and float(d.max()) == 1.0
    assert bool((d.amax(1) > 0).all())  # no empty atom
    atoms = d.view(960, 28, 28)
    # order: kernel size, orientation, phase, tile row, tile column; a tile inside the image keeps the
    # whole kernel (max exactly 1) and nothing outside its tile
    start = 0
    for k, t in zip((3, 7, 15), (10, 4, 2)):
        for _ in range(8):
            for i in range(t):
                for j in range(t):
                    a = atoms[start]
                    outside = a.clone()
                    outside[k * i:k * i + k, k * j:k * j + k] = 0
                    assert float(outside.abs().max()) == 0.0
                    if k * (i + 1) <= 28 and k * (j + 1) <= 28:
                        assert float(a.max()) == 1.0 and float(a.min()) == 0.0
                    start += 1
    assert start == 960


def test_gabor_kernels_known_values():
    d = wna.gabor_dictionary(dtype=torch.float64).view(960, 28, 28)
    k0 = d[0, :3, :3]  # 3x3, theta 0, phase 0, first tile: centre 1, its left and right neighbours the minimum
    assert float(k0[1, 1]) == 1.0 and float(k0[1, 0]) == 0.0 and float(k0[1, 2]) == 0.0
    assert torch.allclose(k0, k0.flip(0, 1)) and torch.allclose(k0, k0.flip(0))  # even: 180° symmetric
    # sigma = k/7, wavelength k/2, aspect 0.5: vertical neighbour exp(-(7/6)²/2) on the min-max scale
    lo = -0.5 * math.exp(-0.5 * (7 / 3) ** 2)
    assert float(k0[0, 1]) == pytest.approx((math.exp(-0.5 * (7 / 6) ** 2) - lo) / (1 - lo), abs=1e-12)
    k1 = d[100, :3, :3]  # 3x3, theta 0, phase 90°: odd, so its min-max scaled values mirror to 1 - value
    assert torch.allclose(k1 + k1.flip(0, 1), torch.ones(3, 3, dtype=torch.float64))
    assert float(k1[1, 0]) == 1.0 and float(k1[1, 2]) == 0.0  # OpenCV's orientation of the odd kernel
    big = d[-1]  # 15x15, last orientation and phase, bottom-right tile: cropped to 13x13
    assert float(big[:15, :].abs().max()) == 0.0 and float(big[15:, 15:].max()) > 0


@pytest.mark.parametrize("kwargs, match", [
    ({"kernel_sizes": (4, 7, 15)}, "odd"),
    ({"kernel_sizes": (1, 7, 15)}, ">= 3"),
    ({"tiles": (11, 4, 2)}, "at most 10 tiles"),
    ({"tiles": (10, 4)}, "one count per kernel size"),
    ({"orientations": 0}, "orientations must be an integer >= 1"),
    ({"size": 2.5}, "size must be an integer"),
    ({"dtype": torch.int64}, "floating-point"),
])
def test_gabor_dictionary_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        wna.gabor_dictionary(**kwargs)


# ---------------------------------------------------------------- Gabor noise: fit and samples
def reference_fit(images, k, alpha):
    """Independent reference: ridge with an unpenalised intercept column, then PCA by SVD."""
    d = wna.gabor_dictionary(dtype=torch.float64)
    design = torch.cat([d.T, torch.ones(784, 1, dtype=torch.float64)], 1)  # (pixels, atoms + 1)
    penalty = torch.full((961,), alpha, dtype=torch.float64)
    penalty[-1] = 0
    y = images.reshape(len(images), -1).double().T
    beta = torch.linalg.solve(design.T @ design + torch.diag(penalty), design.T @ y)
    w = beta[:-1].T  # (N, atoms)
    wc = w - w.mean(0)
    _, s, vh = torch.linalg.svd(wc, full_matrices=False)
    scores = wc @ vh[:k].T
    return vh[:k], float((s[:k] ** 2).sum() / (s ** 2).sum()), scores.amin(0), scores.amax(0)


def test_gabor_fit_matches_reference(fitted):
    images = smooth_images()
    comps, explained, low, high = reference_fit(images, 40, 0.1)
    assert fitted.components.shape == (40, 960)
    c = fitted.components
    assert torch.allclose(c @ c.T, torch.eye(40, dtype=torch.float64), atol=1e-10)  # orthonormal in weight space
    assert 0 < fitted.explained_variance <= 1
    assert fitted.explained_variance == pytest.approx(explained, rel=1e-8)
    sign = torch.sign((c * comps).sum(1))  # components are defined up to sign
    assert torch.allclose((c * comps).sum(1).abs(), torch.ones(40, dtype=torch.float64), atol=1e-6)
    lo = torch.where(sign > 0, low, -high)
    hi = torch.where(sign > 0, high, -low)
    assert torch.allclose(fitted.low.double(), lo, rtol=1e-4, atol=1e-4)
    assert torch.allclose(fitted.high.double(), hi, rtol=1e-4, atol=1e-4)
    assert torch.allclose(fitted.basis.double(), c @ wna.gabor_dictionary(dtype=torch.float64), atol=1e-5)
    assert float(fitted.offset.abs().max()) == 0.0  # the paper adds no mean
    assert fitted.image_shape == (1, 28, 28) and fitted.label() == "Gabor noise (40 PCA components)"
    everything = wna.GaborNoise.fit(images[:30], n_components=30, cache=False)
    assert everything.explained_variance == pytest.approx(1.0, abs=1e-9)  # 30 images: rank <= 29


def test_gabor_samples(fitted):
    x = draw(fitted, 300)
    assert x.shape == (300, 1, 28, 28)
    flat = x.view(300, -1)
    assert bool((flat.amin(1) == 0).all()) and bool((flat.amax(1) == 1).all())
    # before scaling: offset + w @ basis with w uniform in [low, high] per component, from the same draws
    u = torch.rand((300, 40), generator=torch.Generator().manual_seed(0))
    w = fitted.low + (fitted.high - fitted.low) * u
    raw = (w.double() @ fitted.basis.double() + fitted.offset.double())
    scaled = (raw - raw.amin(1, keepdim=True)) / (raw.amax(1, keepdim=True) - raw.amin(1, keepdim=True))
    assert torch.allclose(flat.double(), scaled, atol=1e-5)
    # and the scaled samples themselves lie in span{1, offset, basis}
    span = torch.cat([torch.ones(1, 784), fitted.basis]).double()
    coef = torch.linalg.lstsq(span.T, flat.double().T).solution
    assert float((span.T @ coef - flat.double().T).abs().max()) < 1e-4
    other = torch.rand(784, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    residual = span.T @ torch.linalg.lstsq(span.T, other).solution - other
    assert float(residual.abs().max()) > 0.1  # white noise does not


def test_gabor_add_mean_offset():
    images = smooth_images()
    g = wna.GaborNoise.fit(images, n_components=10, add_mean=True, cache=False)
    d = wna.gabor_dictionary(dtype=torch.float64)
    atoms = d - d.mean(1, keepdim=True)
    gram = atoms @ atoms.T + 0.1 * torch.eye(960, dtype=torch.float64)
    mean_w = torch.linalg.solve(gram, atoms @ images.reshape(150, -1).double().mean(0))
    assert torch.allclose(g.offset.double(), mean_w @ d, atol=1e-4)
    x = draw(g, 50).view(50, -1).double()
    span = torch.cat([torch.ones(1, 784), g.offset[None], g.basis]).double()
    coef = torch.linalg.lstsq(span.T, x.T).solution
    assert float((span.T @ coef - x.T).abs().max()) < 1e-4


def test_gabor_fit_is_cached(tmp_path, monkeypatch):
    images = smooth_images(60, seed=1)
    first = wna.GaborNoise.fit(images, n_components=8, cache_dir=tmp_path)
    files = list(tmp_path.glob("gabor-*.pt"))
    assert len(files) == 1 and not list(tmp_path.glob(".*.tmp"))
    assert wna.GaborNoise.fit(images, n_components=8, cache_dir=tmp_path) is first  # memoised
    sn._MEMO.clear()
    monkeypatch.setattr(sn, "_fit", lambda *a, **k: pytest.fail("the fit ran again instead of loading"))
    second = wna.GaborNoise.fit(images, n_components=8, cache_dir=tmp_path)
    assert second is not first and second.describe() == first.describe()
    assert second.explained_variance == first.explained_variance
    assert torch.equal(draw(first, 20), draw(second, 20))
    monkeypatch.undo()
    other = wna.GaborNoise.fit(images, n_components=8, alpha=1.0, cache_dir=tmp_path)
    assert other.describe() != first.describe() and len(list(tmp_path.glob("gabor-*.pt"))) == 2
    changed = images.clone()
    changed[0, 0, 0, 0] += 0.5
    assert wna.GaborNoise.fit(changed, n_components=8, cache_dir=tmp_path).describe() != first.describe()
    files[0].write_bytes(b"not a torch file")  # a damaged cache file is fitted again
    sn._MEMO.clear()
    assert wna.GaborNoise.fit(images, n_components=8, cache_dir=tmp_path).describe() == first.describe()


@pytest.mark.parametrize("make, match", [
    (lambda im: wna.GaborNoise.fit(im, n_components=0, cache=False), "n_components must be an integer >= 1"),
    (lambda im: wna.GaborNoise.fit(im, n_components=151, cache=False), "at most min"),
    (lambda im: wna.GaborNoise.fit(im, n_components=5, alpha=0.0, cache=False), "alpha must be > 0"),
    (lambda im: wna.GaborNoise.fit(im[:, :, :, :27], cache=False), "square"),
    (lambda im: wna.GaborNoise.fit(im.expand(-1, 3, -1, -1), cache=False), "single-channel"),
    (lambda im: wna.GaborNoise.fit(im[:1], n_components=1, cache=False), "at least 2 images"),
    (lambda im: wna.GaborNoise.fit((im * 255).to(torch.uint8), cache=False), "floating-point"),
    (lambda im: wna.GaborNoise(torch.ones(3, 784), torch.zeros(784), torch.zeros(3), torch.ones(3), (1, 28, 27)),
     r"basis must be \(k, 756\)"),
    (lambda im: wna.GaborNoise(torch.ones(3, 4), torch.zeros(4), torch.ones(3), torch.zeros(3), (1, 2, 2)),
     "low <= high"),
    (lambda im: wna.GaborNoise(torch.ones(3, 4), torch.zeros(4), torch.zeros(2), torch.ones(2), (1, 2, 2)),
     r"low must be \(3,\)"),
])
def test_gabor_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make(smooth_images())


# ---------------------------------------------------------------- sinusoid noise
def test_sinusoid_samples_span_the_range():
    s = wna.Sinusoid(low=-1.0, high=2.0)
    assert s.n_patterns == 6 * 2 * (1 + 4 + 16) == 252
    x = draw(s, 200).view(200, -1)
    assert torch.allclose(x.amin(1), torch.full((200,), -1.0)) and torch.allclose(x.amax(1), torch.full((200,), 2.0))
    assert s.label() == "sinusoid noise (252 patterns, 3 scales) on [-1, 2]"
    assert s.describe()["scales"] == [1.0, 2.0, 4.0] and s.describe() != wna.Sinusoid().describe()
    assert s == wna.Sinusoid(low=-1, high=2) and hash(s) == hash(wna.Sinusoid(low=-1, high=2))


def test_sinusoid_patterns_known_values():
    p = wna.Sinusoid().patterns().view(252, 28, 28)
    x = torch.linspace(0, 2, 28, dtype=torch.float64)
    assert torch.allclose(p[0], torch.sin(2 * math.pi * x).expand(28, 28))  # scale 1, 0°, phase 0: along x
    assert torch.allclose(p[1], torch.cos(2 * math.pi * x).expand(28, 28))  # phase π/2
    assert torch.allclose(p[6], torch.sin(2 * math.pi * x)[:, None].expand(28, 28), atol=1e-12)  # 90°: along y
    # scale 2 starts at pattern 12: patch (0, 1) is the top-right 14x14 quarter, zero elsewhere
    q = p[13]
    x14 = torch.linspace(0, 2, 14, dtype=torch.float64)
    assert torch.allclose(q[:14, 14:], torch.sin(2 * math.pi * x14).expand(14, 14))
    assert float(q[14:].abs().max()) == 0 and float(q[:, :14].abs().max()) == 0
    # the contrasts: one matrix product of uniform [-1, 1] weights with the patterns
    c = torch.rand((5, 252), generator=torch.Generator().manual_seed(0)) * 2 - 1
    raw = c.double() @ p.view(252, -1)
    scaled = (raw - raw.amin(1, keepdim=True)) / (raw.amax(1, keepdim=True) - raw.amin(1, keepdim=True))
    assert torch.allclose(draw(wna.Sinusoid(), 5).view(5, -1).double(), scaled, atol=1e-5)


def test_sinusoid_channels_share_the_pattern():
    x = draw(wna.Sinusoid(image_shape=(3, 8, 8), scales=(1, 2)), 4, (3, 8, 8))
    assert x.shape == (4, 3, 8, 8) and torch.equal(x[:, 0], x[:, 2])


@pytest.mark.parametrize("kwargs, match", [
    ({"scales": (1, 3)}, r"allowed scales: \[1, 2, 4, 7, 14\]"),
    ({"scales": (28,)}, "at least 2 pixels"),
    ({"scales": ()}, "non-empty"),
    ({"low": 1.0, "high": 1.0}, "low < high"),
    ({"orientations": ()}, "non-empty"),
    ({"phases": (0.0, float("nan"))}, "finite"),
    ({"cycles": 0}, "cycles must be > 0"),
    ({"image_shape": (28,)}, r"\(C, H, W\)"),
])
def test_sinusoid_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        wna.Sinusoid(**kwargs)


# ---------------------------------------------------------------- through the engine
def tiny_linear():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))


@pytest.mark.parametrize("kind", ["gabor", "sinusoid", "matched"])
def test_batch_size_invariance(kind, fitted):
    noise = {"gabor": fitted, "sinusoid": wna.Sinusoid(),
             "matched": wna.Gaussian.matched(smooth_images())}[kind]
    model = tiny_linear()
    runs = [wna.classification_images(model, 1500, noise=noise,
                                      run=wna.RunOptions(batch_size=b, seed=0, chunk_size=512, progress=False))
            for b in (100, 1024)]
    assert torch.equal(runs[0].counts, runs[1].counts) and int(runs[0].counts.sum()) == 1500
    assert (runs[0].images - runs[1].images).nan_to_num().abs().max() <= 1e-9
    assert int((runs[0].counts > 0).sum()) >= 2  # the noise reaches more than one class


def test_engine_rejects_wrong_shape_early(fitted):
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 28 * 28, 10))
    for noise in (fitted, wna.Sinusoid()):
        with pytest.raises(ValueError, match="input shape"):
            wna.classification_images(model, 100, noise=noise, input_shape=(3, 28, 28), progress=False)


@needs_data
def test_gabor_fit_on_mnist(tmp_path):
    images = wna.load_dataset("mnist", "train").images[:2000]
    g = wna.GaborNoise.fit(images, cache_dir=tmp_path)
    assert g.basis.shape == (250, 784) and 0.9 < g.explained_variance <= 1
    x = draw(g, 100)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert float(x.std()) > 0.05
