"""The engine's fast paths (wna_helpers.speed): same answers as the plain path, fallbacks, the allocator."""
import os
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

import wna_helpers as wna
from wna_helpers.engine.speed import (COMPILE_MIN_SAMPLES, choose_channels_last, fast_forward, memory_layout,
                                     should_compile)

CPU = torch.device("cpu")


def _corr_min(a, b, counts):
    return min(wna.pearson(a[c], b[c]) for c in range(len(counts)) if counts[c] >= 200)


def test_channels_last_by_default_on_a_cpu_only():
    """Auto picks channels-last on a CPU, never on a GPU (cuDNN ran paper_cnn contiguous 1.22x as fast on an H200);
    the GPU's answer comes before anything touches the device, so this runs without one."""
    model = wna.build_model("paper_cnn", seed=0).eval()
    assert choose_channels_last(model, (1, 28, 28), CPU) is True
    assert choose_channels_last(model, (1, 28, 28), torch.device("cuda")) is False
    assert choose_channels_last(model, (1, 28, 28), torch.device("cuda"), requested=False) is False


@pytest.mark.parametrize("arch", ["paper_cnn", "net3"])
def test_channels_last_changes_rounding_only(arch):
    """Another memory layout may move a borderline sample to the next class, nothing more."""
    model = wna.build_model(arch, seed=0)
    assert choose_channels_last(model.eval(), (1, 28, 28), CPU) is True
    fast = wna.classification_images(model, 20_000, noise=wna.Uniform(), progress=False)
    plain = wna.classification_images(model, 20_000, noise=wna.Uniform(), channels_last=False, progress=False)
    assert int((fast.counts - plain.counts).abs().sum()) <= 10, (fast.counts, plain.counts)
    assert _corr_min(fast.images, plain.images, plain.counts) >= 0.9999
    s_fast = wna.spike_triggered_average(model, "conv2", 4000, progress=False)
    s_plain = wna.spike_triggered_average(model, "conv2", 4000, channels_last=False, progress=False)
    assert torch.allclose(s_fast.pooled, s_plain.pooled, rtol=0, atol=1e-5, equal_nan=True)


class ViewFlatten(nn.Module):
    """A model whose ``.view`` needs contiguous tensors: it cannot run channels-last."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 26 * 26, 10)

    def forward(self, x):
        h = torch.relu(self.conv1(x))
        return self.fc(h.view(h.shape[0], -1))


def test_a_model_that_cannot_run_channels_last_falls_back():
    torch.manual_seed(0)
    model = ViewFlatten().eval()
    assert choose_channels_last(model, (1, 28, 28), CPU) is False  # silently
    with pytest.raises(ValueError, match="fails with channels-last tensors"):
        choose_channels_last(model, (1, 28, 28), CPU, requested=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ci = wna.classification_images(model, 3000, progress=False)
    plain = wna.classification_images(model, 3000, channels_last=False, progress=False)
    assert torch.equal(ci.counts, plain.counts) and torch.equal(ci.sums, plain.sums)
    with pytest.raises(ValueError, match="channels_last=True"):
        wna.classification_images(model, 3000, channels_last=True, progress=False)


def test_no_convolution_no_channels_last():
    model = wna.build_model("mlp", seed=0).eval()
    assert choose_channels_last(model, (1, 28, 28), CPU) is False
    with pytest.raises(ValueError, match="no 2-d convolution"):
        choose_channels_last(model, (1, 28, 28), CPU, requested=True)


def test_memory_layout_restores_the_same_parameters():
    model = wna.build_model("paper_cnn", seed=0)
    before = {n: (p, p.data_ptr(), p.stride()) for n, p in model.named_parameters()}
    with memory_layout(model, True):
        assert model.conv1.weight.stride() == (25, 1, 5, 1)  # one input channel: only .to re-strides it
        assert model.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(RuntimeError), memory_layout(model, True):
        raise RuntimeError
    for n, p in model.named_parameters():
        assert p is before[n][0] and p.data_ptr() == before[n][1] and p.stride() == before[n][2]


def test_fast_forward_runs_the_engines_layout_and_restores_the_weights():
    model = wna.build_model("paper_cnn", seed=0).eval()
    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    before = {n: (p.data_ptr(), p.stride()) for n, p in model.named_parameters()}
    with torch.no_grad():
        plain = model(x)
        with fast_forward(model, (1, 28, 28), CPU) as forward:
            assert model.conv2.weight.is_contiguous(memory_format=torch.channels_last)   # channels-last inside
            fast = forward(x)
        with fast_forward(model, (1, 28, 28), CPU, channels_last=False) as forward:
            assert forward is model and model.conv2.weight.is_contiguous()
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)                   # float32 rounding only
    assert {n: (p.data_ptr(), p.stride()) for n, p in model.named_parameters()} == before
    # a model that cannot run channels-last runs as it is; a dense one too
    for m in (ViewFlatten().eval(), wna.build_model("mlp", seed=0).eval()):
        with fast_forward(m, (1, 28, 28), CPU) as forward:
            assert forward is m


def test_gamma_curves_take_the_engines_layout_and_agree_with_the_plain_one(monkeypatch):
    """gamma_curves runs the model in the engine's layout (as the attacks and the trojan predictions do); its counts
    match the contiguous run's up to a few borderline inputs, and the model's weights come back as they were."""
    from wna_helpers.engine import speed
    model = wna.build_model("paper_cnn", seed=0).eval()
    gen = torch.Generator().manual_seed(2)
    base, patterns = torch.rand(1000, 1, 28, 28, generator=gen), torch.rand(10, 1, 28, 28, generator=gen)
    choose, chosen = speed.choose_channels_last, []
    monkeypatch.setattr(speed, "choose_channels_last", lambda *a, **k: chosen.append(choose(*a, **k)) or chosen[-1])
    fast = wna.gamma_curves(model, patterns, base, [0.0, 0.3, 0.6])
    assert chosen == [True] and model.conv2.weight.is_contiguous()
    monkeypatch.setattr(speed, "choose_channels_last", lambda *a, **k: choose(*a[:3], requested=False))
    plain = wna.gamma_curves(model, patterns, base, [0.0, 0.3, 0.6])
    moved = (fast["share"] - plain["share"]).abs() * 1000
    assert float(moved.max()) <= 3                                  # a few borderline inputs at most


def test_should_compile():
    assert should_compile(None, COMPILE_MIN_SAMPLES, CPU, False)
    assert not should_compile(None, COMPILE_MIN_SAMPLES - 1, CPU, False)
    assert not should_compile(None, 10**9, torch.device("cuda"), False)
    assert not should_compile(None, 10**9, CPU, True)  # taps: never by itself
    assert should_compile(True, 1, CPU, False) and not should_compile(False, 10**9, CPU, False)
    with pytest.raises(ValueError, match="tapped"):
        should_compile(True, 10, CPU, True)
    with pytest.raises(ValueError, match="compile=True cannot"):
        wna.spike_triggered_average(wna.build_model("paper_cnn", seed=0), "conv1", 100, compile=True, progress=False)


def test_failed_compile_warns_and_runs_eagerly(monkeypatch):
    model = wna.build_model("logreg", seed=0)
    plain = wna.classification_images(model, 3000, progress=False)

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")
    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(RuntimeWarning, match="no C.. compiler"):
        got = wna.classification_images(model, 3000, compile=True, progress=False)
    assert torch.equal(got.counts, plain.counts) and torch.equal(got.sums, plain.sums)


def test_compiled_forward_same_answer():
    """torch.compile on a small model, with a short last batch that is padded to the compiled shape."""
    model = wna.build_model("logreg", seed=0)
    plain = wna.classification_images(model, 5000, batch_size=2048, progress=False)
    got = wna.classification_images(model, 5000, batch_size=2048, compile=True, progress=False)
    assert int((got.counts - plain.counts).abs().sum()) <= 4
    assert _corr_min(got.images, plain.images, plain.counts) >= 0.9999
    assert int(got.counts.sum()) == 5000


def test_a_second_network_of_one_architecture_reuses_the_compiled_graph():
    """What COMPILE_AGAIN_MIN_SAMPLES rests on: dynamo compiles one graph for two models of one class."""
    from torch._dynamo.utils import counters
    from wna_helpers.engine.speed import compile_forward, forward_signature
    a, b = wna.build_model("logreg", seed=0).eval(), wna.build_model("logreg", seed=1).eval()
    x = torch.rand(64, 1, 28, 28)
    assert forward_signature(a, x) == forward_signature(b, x)
    assert forward_signature(a, x) != forward_signature(a, x[:32])
    assert forward_signature(a, x) != forward_signature(wna.build_model("mlp", seed=0), x)
    fa = compile_forward(a, x)
    graphs = counters["stats"]["unique_graphs"]
    fb = compile_forward(b, x)
    assert counters["stats"]["unique_graphs"] == graphs   # no new graph for b
    with torch.inference_mode():
        assert torch.allclose(fb(x), b(x), atol=1e-5) and not torch.allclose(fa(x), fb(x))


def test_auto_compile_weighs_what_the_process_compiled_before(monkeypatch):
    """compile=None: a forward that keeps being used gets compiled, and once compiled, later runs of it (another
    network of the same architecture included) compile at small sizes; a failed compilation is not retried; a
    model without a convolution is never compiled by itself."""
    from wna_helpers.engine import speed
    monkeypatch.setattr(speed, "COMPILE_MIN_SAMPLES", 5000)
    monkeypatch.setattr(speed, "COMPILE_AGAIN_MIN_SAMPLES", 1500)
    compiled = []

    def fake_compile(model, dynamic=False):   # records, and runs the model as it is
        compiled.append(model)
        return model
    monkeypatch.setattr(torch, "compile", fake_compile)
    a, b = wna.build_model("paper_cnn", seed=0), wna.build_model("paper_cnn", seed=1)
    ci = lambda m, n, **kw: wna.classification_images(m, n, progress=False, batch_size=1000, **kw)  # noqa: E731
    ci(a, 3000)
    assert compiled == [] and speed.compile_history() == {"compiled": 0, "failed": 0, "eager_samples": 3000}
    ci(a, 2000)                 # 3,000 + 2,000 streamed through this forward: compiled
    assert compiled == [a]
    ci(b, 1500)                 # another network of the architecture, compiled before: cheap, so compiled
    assert compiled == [a, b]
    ci(b, 1400)                 # too short even so
    ci(wna.build_model("lenet", seed=0), 4000)   # another forward: its own count
    ci(a, 3000, compile=False)  # asked not to
    ci(wna.build_model("logreg", seed=0), 6000)  # no convolution: never by itself
    assert compiled == [a, b]
    assert speed.compile_history() == {"compiled": 1, "failed": 0, "eager_samples": 3000 + 1400 + 4000 + 3000 + 6000}
    s = wna.spike_triggered_average(a, "conv1", 6000, progress=False)
    assert compiled == [a, b] and s.n_samples == 6000   # tapped layers: never compiled, never counted
    got = ci(wna.build_model("logreg", seed=0), 1000, compile=True)   # asked for: compiled
    assert compiled[-1] is not a and int(got.counts.sum()) == 1000

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")
    monkeypatch.setattr(torch, "compile", broken)
    lenet = wna.build_model("lenet", seed=1)
    with pytest.warns(RuntimeWarning, match="no C.. compiler"):
        ci(lenet, 1000)         # 4,000 + 1,000: tried, failed, eager
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = ci(lenet, 6000)   # not tried again, although over COMPILE_MIN_SAMPLES
    assert int(got.counts.sum()) == 6000 and speed.compile_history()["failed"] == 1


ALLOC = "import wna_helpers as wna, json; wna.classification_images(wna.build_model('logreg'), 100, progress=False); " \
        "print(json.dumps(wna.allocator_status()))"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
@pytest.mark.parametrize("env, applied", [("1", True), ("0", False)])
def test_allocator_tuned_once_unless_turned_off(env, applied):
    import json
    import platform
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    out = subprocess.run([sys.executable, "-c", ALLOC], capture_output=True, text=True, check=True,
                         env={**os.environ, "WNA_MALLOPT": env})
    status = json.loads(out.stdout.strip().splitlines()[-1])
    assert status["applied"] is applied, status
    if applied:
        assert status["settings"]["M_MMAP_THRESHOLD"] == 32 << 20
    else:
        assert status["reason"] == "WNA_MALLOPT=0"


HEAP_ONLY = """
import ctypes, json, torch
from torch import nn
import wna_helpers as wna
from wna_helpers.engine import allocator

class Info(ctypes.Structure):   # glibc's struct mallinfo2
    _fields_ = [(f, ctypes.c_size_t) for f in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info

def mapped(mb):   # how many buffers of their own mmap an allocation of mb MiB added
    before = libc.mallinfo2().hblks
    x = torch.empty(mb << 20, dtype=torch.uint8)
    got = libc.mallinfo2().hblks - before
    del x
    return got

class Big(nn.Module):   # a forward pass with a 64 MiB activation, which notes how it was allocated
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.seen = []
    def forward(self, x):
        self.seen.append(mapped(64))
        return self.fc(x.flatten(1))

out = {"tuned": allocator.tune_allocator()["applied"], "outside": mapped(100)}
big = Big()   # first, while the heap has no free chunk of 64 MiB: the probe before the run maps its own
wna.classification_images(big, 64, input_shape=(1, 2, 2), progress=False, batch_size=32, compile=False,
                          channels_last=False)
out["engine"] = big.seen
with allocator.heap_only() as on:
    with allocator.heap_only() as inner:
        out["nested"] = inner
    out["on"], out["inside"] = on, mapped(100)   # still on after the inner block
out["after"] = mapped((libc.mallinfo2().keepcost >> 20) + 64)   # more than the heap has free: its own mmap again
print(json.dumps(out))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
@pytest.mark.parametrize("env", ["1", "0"])
def test_heap_only_serves_large_buffers_from_the_heap_in_engine_runs_and_restores_mmap(env):
    """Buffers over glibc's largest mmap threshold come from the heap within :func:`heap_only` (and every engine
    run), from their own mmap outside it; ``WNA_HEAP_ONLY=0`` turns it off."""
    import json
    import platform
    lib, version = platform.libc_ver()
    if lib != "glibc" or tuple(int(v) for v in version.split(".")[:2]) < (2, 33):
        pytest.skip("needs glibc 2.33 or later (mallinfo2)")
    proc = subprocess.run([sys.executable, "-c", HEAP_ONLY], capture_output=True, text=True, check=True,
                          env={**os.environ, "WNA_HEAP_ONLY": env, "WNA_MALLOPT": "1"})
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # the last two forward passes are the run's two batches (a probe before them)
    assert out["tuned"] and out["outside"] == 1 and out["after"] == 1, out
    if env == "1":
        assert out["on"] and out["nested"] and out["inside"] == 0 and out["engine"][-2:] == [0, 0], out
    else:
        assert not out["on"] and not out["nested"] and out["inside"] == 1 and out["engine"][-2:] == [1, 1], out


@pytest.mark.parametrize("kw, match", [({"channels_last": "yes"}, "channels_last must be"),
                                        ({"compile": 1}, "compile must be")])
def test_bad_speed_options(kw, match):
    with pytest.raises(ValueError, match=match):
        wna.RunOptions(**kw)


def test_compiled_kernels_persist_under_the_cache_root(tmp_path, monkeypatch):
    from wna_helpers.engine.speed import inductor_cache
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("WNA_CACHE_DIR", str(tmp_path))
    assert inductor_cache() == str(tmp_path / "inductor") == os.environ["TORCHINDUCTOR_CACHE_DIR"]
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/elsewhere")   # a user's own setting wins
    assert inductor_cache() == "/elsewhere"


def test_the_books_million_sample_runs_compile_and_its_quick_runs_do_not():
    assert should_compile(None, 1_000_000, CPU, False) and not should_compile(None, 20_000, CPU, False)
    assert not should_compile(None, 1_000_000, CPU, False, convolutional=False)


def test_heap_watch_releases_only_when_the_heap_grew(monkeypatch):
    from wna_helpers.engine import allocator

    sizes = iter([1000.0, 1010.0, 1100.0, 1001.0, 1020.0, 1300.0, 1290.0, 1310.0, 1340.0, 1295.0])
    released = []
    monkeypatch.setattr(allocator, "resident_mb", lambda: next(sizes))
    monkeypatch.setattr(allocator, "release_free_memory", lambda: released.append(True) or True)
    watch = allocator.HeapWatch(settle=2, slack_mb=48, every=1)
    watch.active = True  # as if the allocator were tuned
    watch.step(1)  # before settling: no look at all
    watch.step(2)  # settles at 1000
    assert watch.baseline == 1000.0 and not released
    watch.step(3)  # 1010: within the slack
    assert not released
    watch.step(4)  # 1100: grown, released, back to 1001
    assert len(released) == 1 and watch.baseline == 1000.0
    watch.step(5)  # 1020
    watch.step(6)  # 1300: released, but 1290 stays: live growth, the baseline moves up
    assert len(released) == 2 and watch.baseline == 1290.0
    watch.step(7)  # 1310: within the slack of the new baseline, no release over and over
    assert len(released) == 2
    watch.step(8)  # 1340: 50 MB past 1290
    assert len(released) == 3


def test_heap_watch_settles_when_the_heap_grows_straight_back_after_a_release(monkeypatch):
    """A large model's buffers taken from the system again every batch: the size is past the slack at the next
    look after a release, so the watch settles there instead of releasing at every look (each release of a
    large heap cost alexnet_small about 2 s of kernel time, 494 s over a 10^6-sample run)."""
    from wna_helpers.engine import allocator

    sizes = iter([1000.0, 1100.0, 1001.0, 1100.0, 1110.0, 1120.0, 1200.0, 1001.0])
    released = []
    monkeypatch.setattr(allocator, "resident_mb", lambda: next(sizes))
    monkeypatch.setattr(allocator, "release_free_memory", lambda: released.append(True) or True)
    watch = allocator.HeapWatch(settle=1, slack_mb=48, every=2)
    watch.active = True
    watch.step(1)                 # settles at 1000
    watch.step(3)                 # 1100: released, back to 1001
    assert len(released) == 1 and watch.baseline == 1000.0
    watch.step(5)                 # 1100 again at the next look: the working set; settle, do not release
    assert len(released) == 1 and watch.baseline == 1100.0
    watch.step(7)                 # 1110, within the slack
    watch.step(9)                 # 1120
    watch.step(11)                # 1200: grown again, long after the last release: release
    assert len(released) == 2


def test_heap_watch_is_idle_without_a_tuned_allocator(monkeypatch):
    from wna_helpers.engine import allocator

    monkeypatch.setattr(allocator, "resident_mb", lambda: pytest.fail("looked at the resident size"))
    watch = allocator.HeapWatch(settle=1, every=1)
    watch.active = False
    for i in range(1, 10):
        watch.step(i)
    assert watch.releases == 0


def test_cpu_batch_halves_until_a_batchs_widest_output_fits_the_slack_and_all_its_outputs_the_budget():
    from wna_helpers.engine.allocator import BATCH_OUTPUTS_MB, HEAP_SLACK_MB, heap_batch_size
    from wna_helpers.engine.kernel import default_batch_size, probe_model

    assert heap_batch_size(None) == heap_batch_size(0) == 1024
    assert heap_batch_size(HEAP_SLACK_MB * 2**20 // 1024) == 1024          # exactly the slack at 1,024
    assert heap_batch_size(HEAP_SLACK_MB * 2**20 // 1024 + 1) == 512
    assert heap_batch_size(10**9) == 128                                    # never under the floor
    # the outputs of all layers together: exactly the budget at 1,024 keeps it, a byte more halves it
    assert heap_batch_size(0, total_bytes=BATCH_OUTPUTS_MB * 2**20 // 1024) == 1024
    assert heap_batch_size(0, total_bytes=BATCH_OUTPUTS_MB * 2**20 // 1024 + 1) == 512
    assert heap_batch_size(0, total_bytes=10**9) == 128
    probes = {a: probe_model(wna.build_model(a, seed=0).eval(), (1, 28, 28), CPU)
              for a in ("paper_cnn", "lenet", "net3", "alexnet_small", "mlp")}
    widths = {a: p[3] for a, p in probes.items()}
    totals = {a: p[4] for a, p in probes.items()}
    assert widths["paper_cnn"] == 20 * 24 * 24 * 4 and widths["net3"] == 32 * 28 * 28 * 4   # conv1's output
    # paper_cnn's leaf outputs, each layer once: conv1 and its ReLU, the pool, conv2 and its ReLU, the pool, the
    # flattened copy, fc1 and its ReLU, the logits
    assert totals["paper_cnn"] == 4 * (2 * 20 * 24 * 24 + 20 * 12 * 12 + 2 * 50 * 8 * 8 + 2 * 800
                                       + 2 * 500 + 10)
    assert {a: default_batch_size(CPU, widths[a], total_bytes=totals[a]) for a in probes} == {
        "paper_cnn": 1024, "lenet": 512, "net3": 256, "alexnet_small": 256, "mlp": 1024}
    assert default_batch_size(CPU, widths["alexnet_small"]) == 512      # its widest output alone allows 512
    assert default_batch_size(torch.device("cuda"), widths["net3"], total_bytes=totals["net3"]) == 32_768
    # an accumulator's cap (the STA's 256): never more than the heap rule, nothing on CUDA
    assert {a: default_batch_size(CPU, widths[a], cap=256, total_bytes=totals[a]) for a in probes} == {
        "paper_cnn": 256, "lenet": 256, "net3": 256, "alexnet_small": 256, "mlp": 256}
    assert default_batch_size(CPU, 10**9, cap=256) == 128
    assert default_batch_size(torch.device("cuda"), widths["net3"], cap=256) == 32_768


def test_an_sta_streams_in_its_capped_batches_by_default_and_gives_the_sta_of_any_other_batch():
    """The STA caps the batch on a CPU at 128, the STC and the CI do not: 1,024 (paper_cnn)."""
    from wna_helpers.methods.sta import STAAccumulator
    from wna_helpers.methods.stc import STCAccumulator

    model = wna.build_model("paper_cnn", seed=0).eval()
    seen = []
    hook = model.conv1.register_forward_pre_hook(lambda m, a: seen.append(len(a[0])))
    try:
        a = wna.spike_triggered_average(model, "conv1", 2000, noise=wna.Uniform(), progress=False)
        assert max(seen) == STAAccumulator.cpu_batch_cap == 128 and STCAccumulator.cpu_batch_cap is None
        seen.clear()
        b = wna.spike_triggered_average(model, "conv1", 2000, noise=wna.Uniform(), batch_size=1000, progress=False)
        assert max(seen) == 1000
        seen.clear()
        wna.classification_images(model, 2000, compile=False, progress=False)
        assert max(seen) == 1024
        seen.clear()
        wna.spike_triggered_covariance(model, "conv1", 2000, noise=wna.Uniform(), progress=False)
        assert max(seen) == 1024
    finally:
        hook.remove()
    assert torch.allclose(a.pooled, b.pooled, rtol=1e-6, atol=1e-9)
    # a channel whose centre unit never fired is NaN in both (this untrained model's channel 17, 2,000 samples)
    assert torch.allclose(a.center, b.center, rtol=1e-6, atol=1e-9, equal_nan=True)
    assert torch.isnan(a.center).any(dim=(1, 2, 3)).equal(a.center_weight == 0)
    assert torch.allclose(a.mean_activation, b.mean_activation, rtol=1e-6, atol=0)


def test_the_engine_streams_a_wide_model_in_smaller_batches_unless_told():
    """A 1x1 convolution to 64 channels of 28x28 (196 KiB a sample): 128 a batch by default, as asked otherwise."""
    seen = []

    class Wide(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 64, 1)
            self.fc = nn.Linear(64, 3)

        def forward(self, x):
            seen.append(len(x))
            return self.fc(self.conv(x).mean((2, 3)))

    model = Wide().eval()
    a = wna.classification_images(model, 1000, compile=False, progress=False)
    assert max(seen) == 128 and 2 in seen   # the probe's two samples, then batches of 128
    seen.clear()
    b = wna.classification_images(model, 1000, batch_size=300, compile=False, progress=False)
    assert max(seen) == 300
    assert torch.equal(a.counts, b.counts) and torch.allclose(a.sums, b.sums, rtol=0, atol=1e-9)


# ------------------------------------------------------------------ the ReLU inside the convolution
def test_fused_conv_relu_is_the_relu_of_the_convolution_and_refuses_what_it_cannot_fuse():
    from wna_helpers.engine.speed import fused_conv_relu

    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 5, stride=2, padding=1, dilation=2)
    f = fused_conv_relu(conv)
    if f is None:
        pytest.skip("this PyTorch has no oneDNN fused convolution")
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(4, 3, 20, 17).to(memory_format=fmt)
        with torch.inference_mode():
            assert torch.allclose(f(x), torch.relu(conv(x)), rtol=1e-5, atol=1e-6)
    for other in (nn.Conv2d(4, 8, 3, bias=False), nn.Conv2d(4, 8, 3, groups=2, padding=2, stride=2)):
        g, x = fused_conv_relu(other), torch.randn(3, 4, 11, 9)
        with torch.inference_mode():
            assert g is not None and torch.allclose(g(x), torch.relu(other(x)), rtol=1e-5, atol=1e-6)

    class Doubled(nn.Conv2d):  # a subclass may compute something else: never fused
        def forward(self, x):
            return 2 * super().forward(x)
    assert fused_conv_relu(Doubled(1, 2, 3)) is None
    assert fused_conv_relu(nn.Conv2d(1, 2, 3, padding="same")) is None
    assert fused_conv_relu(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect")) is None
    assert fused_conv_relu(nn.Conv2d(1, 2, 3).double()) is None
    hooked = nn.Conv2d(1, 2, 3)
    handle = hooked.register_forward_hook(lambda m, i, o: None)  # the user's hook would be skipped: not fused
    assert fused_conv_relu(hooked) is None
    handle.remove()
    assert fused_conv_relu(hooked) is not None


def test_sta_with_the_fused_relu_equals_the_sta_without_it(monkeypatch):
    """The STA of a first and a second layer through the fused convolution (which runs, and replaces the
    layer's own forward) against the same STA with the fusion turned off: equal up to float32 rounding."""
    from wna_helpers.engine import kernel, speed

    model = wna.build_model("paper_cnn", seed=0)
    calls = {"fused": 0}

    def counting(module):
        f = speed.fused_conv_relu(module)
        if f is None:
            return None

        def run(x):
            calls["fused"] += len(x)
            return f(x)
        return run
    monkeypatch.setattr(kernel, "fused_conv_relu", counting)
    fused = {layer: wna.spike_triggered_average(model, layer, 5000, batch_size=1000, progress=False)
             for layer in ("conv1", "conv2")}
    if calls["fused"] == 0:
        pytest.skip("this PyTorch has no oneDNN fused convolution")
    assert calls["fused"] == 2 * 5000  # every sample of both runs went through it
    monkeypatch.setattr(kernel, "fused_conv_relu", lambda module: None)
    for layer, got in fused.items():
        want = wna.spike_triggered_average(model, layer, 5000, batch_size=1000, progress=False)
        for k in ("pooled", "center", "pooled_weight", "center_weight", "mean_activation"):
            a, b = getattr(got, k), getattr(want, k)
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-7, equal_nan=True), (layer, k)


def test_a_tap_read_raw_and_through_its_relu_gives_each_reader_its_own():
    """An STA and the raw activation means of the same layer in one run: the activation means keep the
    negative outputs (the ReLU is not applied in place under them), the STA equals the STA run alone."""
    from wna_helpers.engine.kernel import run_engine
    from wna_helpers.methods.activations import ActivationAccumulator
    from wna_helpers.methods.sta import STAAccumulator

    model = wna.build_model("paper_cnn", seed=0)
    rf = wna.receptive_field(model, "conv1")
    sta, act = STAAccumulator("conv1", rf, (1, 28, 28)), ActivationAccumulator(["conv1"], "prediction")
    run_engine(model, wna.Uniform(), 3000, [sta, act], input_shape=(1, 28, 28), batch_size=1000, progress=False)
    alone = wna.spike_triggered_average(model, "conv1", 3000, noise=wna.Uniform(), batch_size=1000, progress=False)
    assert float(act.acc["sum:conv1"].min()) < 0  # raw outputs, negative ones included
    pooled = (sta.acc["pooled_num"] / sta.acc["pooled_den"][:, None]).view_as(alone.pooled)
    assert torch.allclose(pooled, alone.pooled, rtol=1e-5, atol=1e-7, equal_nan=True)


def test_the_relu_of_a_layer_that_passes_its_input_on_leaves_the_stimuli_alone():
    """A ``relu_taps`` accumulator on a layer that returns its input (``nn.Identity``) in a pass that stops there:
    the engine must not apply the ReLU in place, or the stimuli (Gaussian, half negative) would change under the
    other readers."""
    from wna_helpers.engine.accumulator import Accumulator
    from wna_helpers.engine.kernel import run_engine

    class Mins(Accumulator):
        needs_logits, relu_taps, taps = False, True, ("inp",)

        def setup(self, num_classes, input_shape, device, tap_shapes):
            self.acc = {"x": torch.zeros(1, dtype=torch.float64), "tap": torch.zeros(1, dtype=torch.float64)}

        def update(self, x, logits, taps, labels):
            self.acc["x"] = torch.minimum(self.acc["x"], x.min().double().reshape(1))
            self.acc["tap"] = torch.minimum(self.acc["tap"], taps["inp"].min().double().reshape(1))

    model = nn.Sequential()
    model.add_module("inp", nn.Identity())
    model.add_module("flat", nn.Flatten())
    model.add_module("fc", nn.Linear(16, 3))
    acc = Mins()
    run_engine(model, wna.Gaussian(), 500, [acc], input_shape=(1, 4, 4), batch_size=100, progress=False)
    assert float(acc.acc["tap"]) == 0.0 and float(acc.acc["x"]) < -1.0
