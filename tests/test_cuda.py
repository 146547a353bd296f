"""The engine on a GPU against the same known answers and invariances as on the CPU (skipped without CUDA).

What may differ from a CPU run, and is allowed here: the noise (CUDA's generator draws another stream from the same
seed), and float32 rounding (cuDNN picks its algorithm per batch size and convolves in TF32 by PyTorch's default),
which can flip the predicted class of a sample whose two largest logits nearly tie. Everything else must hold as on
the CPU.
"""
import pytest
import torch

import wna_helpers as wna

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def r(a, b) -> float:
    return wna.pearson(a, b)


def test_linear_ci_matches_weights_on_cuda():
    model = wna.build_model("logreg", seed=0).cuda()
    ci = wna.classification_images(model, 200_000, progress=False)
    w = model.fc1.weight.detach().cpu()
    target = w - w.mean(0)
    assert ci.images.device.type == "cpu" and int(ci.counts.sum()) == 200_000
    assert min(r(ci.images[c], target[c]) for c in range(10)) >= 0.9
    assert r(ci.images[0], target[1]) < 0.5


def test_first_layer_sta_is_the_filter_on_cuda():
    model = wna.build_model("paper_cnn", seed=0).cuda()
    sta = wna.spike_triggered_average(model, "conv1", 100_000, progress=False)
    w = model.conv1.weight.detach().cpu()
    assert float(wna.filter_correlation(sta.pooled, w).mean()) >= 0.95
    assert float(wna.filter_correlation(sta.center, w).mean()) >= 0.95


def test_batch_size_changes_only_near_ties_on_cuda():
    """Same seed, other batch sizes: the same noise; a sample's class can flip only where its logits nearly tie."""
    model = wna.build_model("paper_cnn", seed=0).cuda()
    a = wna.classification_images(model, 100_000, batch_size=4096, noise=wna.Uniform(), progress=False)
    b = wna.classification_images(model, 100_000, batch_size=32_768, noise=wna.Uniform(), progress=False)
    assert int(a.counts.sum()) == int(b.counts.sum()) == 100_000
    assert int((a.counts - b.counts).abs().sum()) <= 200          # at most 100 flips in 10^5 (0.1 %)
    live = [c for c in range(10) if int(a.counts[c]) >= 1000]
    assert live and min(r(a.images[c], b.images[c]) for c in live) >= 0.99


def test_cuda_and_cpu_agree_in_distribution():
    """Different noise streams, the same linear network (whose CIs have a known direction, its weights): class shares
    within sampling error, CIs alike."""
    model = wna.build_model("logreg", seed=0)
    cpu = wna.classification_images(model, 100_000, progress=False)
    gpu = wna.classification_images(model.cuda(), 100_000, progress=False)
    p, q = cpu.proportions, gpu.proportions
    se = ((p * (1 - p) / 100_000) * 2).sqrt()
    assert bool(((p - q).abs() <= 5 * se + 1e-12).all()), (p, q)
    assert min(r(cpu.images[c], gpu.images[c]) for c in range(10)) >= 0.8


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``paper_cnn`` trained on the GPU on 4,000 MNIST images (quick profile): seconds."""
    from dataclasses import replace
    prof = replace(wna.PROFILES["quick"], name="tiny-cuda", train_subset=4000)
    model, _ = wna.get_trained_model("paper_cnn", "mnist", prof, cache_dir=tmp_path_factory.mktemp("models"),
                                     progress=False, device="cuda")
    return model


def test_bf16_autocast_agrees_with_float32(trained):
    """A trained network's CIs under bf16 autocast against float32 on the same noise."""
    model = trained
    f32 = wna.classification_images(model, 200_000, noise=wna.Uniform(), progress=False)
    bf = wna.classification_images(model, 200_000, noise=wna.Uniform(), autocast=torch.bfloat16, progress=False)
    assert int(bf.counts.sum()) == 200_000
    live = [c for c in range(10) if int(f32.counts[c]) >= 2000]
    assert live and min(r(f32.images[c], bf.images[c]) for c in live) >= 0.99
    assert bf.images.dtype == torch.float64   # the sums stay float64 under autocast


def test_model_left_as_found_on_cuda():
    model = wna.build_model("paper_cnn", seed=0).cuda()
    model.train()
    model(torch.rand(2, 1, 28, 28, device="cuda")).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    strides = {n: p.stride() for n, p in model.named_parameters()}
    wna.classification_images(model, 50_000, progress=False)
    wna.spike_triggered_average(model, "conv2", 50_000, progress=False)
    assert model.training
    assert all(torch.equal(p.grad, grads[n]) and p.stride() == strides[n] for n, p in model.named_parameters())
    assert all(p.device.type == "cuda" for p in model.parameters())


def test_training_on_cuda_learns(trained):
    model = trained
    assert next(model.parameters()).device.type == "cuda" and not model.training
    acc, _ = wna.evaluate(model, wna.load_dataset("mnist", "test", limit=2000))
    assert acc >= 0.8, acc


def test_training_on_cuda_is_deterministic():
    """One seed, one model: cuDNN is held to its deterministic algorithms while training."""
    data = wna.load_dataset("mnist", "train", limit=3000)
    weights = []
    for _ in range(2):
        model = wna.build_model("paper_cnn", seed=0).cuda()
        wna.train(model, data, epochs=1, batch_size=64, progress=False)
        weights.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))
    assert not torch.backends.cudnn.deterministic   # put back
