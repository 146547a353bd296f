"""The white-noise engine against known answers, invariances and error paths."""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import wna_helpers as wna
from wna_helpers.engine.kernel import batch_segments, rank_chunks

ROOT = Path(__file__).resolve().parents[1]


def r(a, b) -> float:
    return wna.pearson(a, b)


# ---------------------------------------------------------------- known answers
def test_linear_ci_matches_weights():
    """For f(x) = Wx + b and isotropic Gaussian noise, CI_c lies along w_c - mean_k w_k."""
    model = wna.build_model("logreg", seed=0)
    ci = wna.classification_images(model, 50_000, progress=False)
    w = model.fc1.weight.detach()
    target = w - w.mean(0)
    rs = [r(ci.images[c], target[c]) for c in range(10)]
    assert min(rs) >= 0.9, rs
    # and not just any direction: the CI of c is far less correlated with another class's direction
    assert r(ci.images[0], target[1]) < 0.5


def test_linear_ci_trained(tmp_path):
    from dataclasses import replace
    prof = replace(wna.PROFILES["quick"], name="tiny-ci", train_subset=2000)
    model, _ = wna.get_trained_model("logreg", "mnist", prof, cache_dir=tmp_path, progress=False)
    ci = wna.classification_images(model, 50_000, progress=False)
    w = model.fc1.weight.detach()
    target = w - w.mean(0)
    present = [c for c in range(10) if ci.counts[c] > 2000]
    assert len(present) >= 5
    assert min(r(ci.images[c], target[c]) for c in present) >= 0.9


@pytest.mark.parametrize("seed", [0, 1])
def test_first_layer_sta_is_the_filter(seed):
    """Bussgang: for Gaussian noise the STA of a = ReLU(w.x + b) is proportional to w."""
    model = wna.build_model("paper_cnn", seed=seed)
    sta = wna.spike_triggered_average(model, "conv1", 20_000, progress=False)
    assert sta.pooled.shape == (20, 1, 5, 5) and sta.positions == 24 * 24
    rp = wna.filter_correlation(sta.pooled, model.conv1.weight)
    rc = wna.filter_correlation(sta.center, model.conv1.weight)
    assert float(rp.mean()) >= 0.95 and float(rc.mean()) >= 0.95
    assert float(rp.mean()) >= float(rc.mean())  # pooling uses every position as a trigger


def test_sta_of_deeper_layer_equals_brute_force():
    """Real-image STA of a padded deep layer against a per-position reference."""
    torch.manual_seed(0)
    model = wna.build_model("net3", seed=0)
    x = torch.rand(64, 1, 28, 28)
    sta = wna.spike_triggered_average(model, "conv2", noise=wna.Images(x), progress=False, batch_size=20)
    rf = wna.receptive_field(model, "conv2")
    assert rf.size == (8, 8) and rf.jump == (2, 2) and rf.offset == (-3, -3)
    with torch.no_grad():
        a = torch.relu(model.conv2(model.pool1(model.relu1(model.conv1(x)))))
    rows, cols = rf.inside((28, 28))
    num = torch.zeros(64, 64, dtype=torch.float64)
    den = torch.zeros(64, dtype=torch.float64)
    for i in rows:
        for j in cols:
            t, l = rf.offset[0] + i * rf.jump[0], rf.offset[1] + j * rf.jump[1]
            win = x[:, 0, t:t + 8, l:l + 8].reshape(64, -1).double()
            num += a[:, :, i, j].double().T @ win
            den += a[:, :, i, j].sum(0).double()
    live = den > 0
    assert torch.allclose(sta.pooled.view(64, -1)[live], (num / den[:, None])[live], atol=1e-5)
    assert torch.allclose(sta.pooled_weight, den, rtol=1e-5)
    # the centre unit (3 + 7 // 2 ... ) window overhangs nothing here; compare with its own reference
    ci, cj = 7, 7
    t, l = rf.offset[0] + ci * 2, rf.offset[1] + cj * 2
    ref = (a[:, :, ci, cj].double().T @ x[:, 0, t:t + 8, l:l + 8].reshape(64, -1).double())
    d = a[:, :, ci, cj].sum(0).double()
    ok = d > 0
    assert torch.allclose(sta.center.view(64, -1)[ok], (ref / d[:, None])[ok], atol=1e-5)


def test_sta_skips_layers_behind_the_tap():
    """An STA needs no logits: each pass stops after the tapped layer, with the same result
    as a pass that runs the whole model (a CI accumulator riding along forces that)."""
    from wna_helpers.methods.ci import CIAccumulator
    from wna_helpers.engine.kernel import run_engine
    from wna_helpers.methods.sta import STAAccumulator

    model = wna.build_model("paper_cnn", seed=0)
    calls = []
    hook = model.fc1.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    try:
        sta = wna.spike_triggered_average(model, "conv2", 3000, batch_size=1000, progress=False)
        assert calls and max(calls) <= 4  # probes only (shapes: 1-2 inputs, layout: 4): no batch reached fc1
        calls.clear()
        rf = wna.receptive_field(model, "conv2")
        acc, ci = STAAccumulator("conv2", rf, (1, 28, 28)), CIAccumulator()
        run_engine(model, wna.Gaussian(), 3000, [acc, ci], input_shape=(1, 28, 28), batch_size=1000, progress=False)
        assert [c for c in calls if c > 4] == [1000, 1000, 1000]
    finally:
        hook.remove()
    full = (acc.acc["pooled_num"] / acc.acc["pooled_den"][:, None]).view_as(sta.pooled)
    assert torch.equal(full, sta.pooled)
    assert int(ci.acc["counts"].sum()) == 3000


def test_receptive_fields_of_registry():
    exp = {"paper_cnn": {"conv2": (14, 2, 0)}, "lenet": {"conv2": (14, 2, 0)},
           "alexnet_small": {"conv3": (11, 1, 0)}, "net3": {"conv3": (18, 4, -7)}}
    for arch, layers in exp.items():
        m = wna.build_model(arch)
        for layer, (size, jump, off) in layers.items():
            rf = wna.receptive_field(m, layer)
            assert (rf.size[0], rf.jump[0], rf.offset[0]) == (size, jump, off)


def test_uniform_noise_and_full_signal_mixture():
    model = wna.build_model("mlp", seed=0)
    ci = wna.classification_images(model, 20_000, noise="uniform", progress=False)
    assert abs(float(ci.mean_stimulus.mean()) - 0.5) < 0.01
    assert float(ci.sums.min()) >= 0
    wide = wna.classification_images(model, 20_000, noise=wna.Uniform(-1, 3), progress=False)
    # U[-1, 3]: mean 1 and mean square 16/12 + 1 = 7/3 (U[0, 2], also of mean 1, would give 4/3)
    second_moment = wide.sumsq.sum(0) / wide.counts.sum()
    assert abs(float(wide.mean_stimulus.mean()) - 1.0) < 0.02 and abs(float(second_moment.mean()) - 7 / 3) < 0.03
    img = torch.rand(1, 1, 28, 28)
    mix = wna.classification_images(model, 1000, noise=wna.Mixture("gaussian", img, 1.0), progress=False)
    c = int(model(img).argmax())
    assert mix.counts[c] == 1000 and torch.allclose(mix.images[c], img[0].double(), atol=1e-6)
    clipped = wna.classification_images(model, 1000, noise=wna.Mixture(wna.Gaussian(), img, 0.5, clip=(0, 1)),
                                        progress=False)
    assert float(clipped.sums.min()) >= 0 and float((clipped.sumsq - clipped.sums).max()) <= 1e-9


def test_stimuli_describe_themselves_completely():
    """Equal descriptions mean equal stimuli; any parameter or image byte changes the description."""
    img = torch.rand(3, 1, 28, 28)
    assert wna.Gaussian().describe() == wna.as_stimulus("gaussian").describe()
    assert wna.Gaussian(0, 1).describe() != wna.Gaussian(0, 2).describe()
    assert wna.Uniform().describe() != wna.Uniform(0, 2).describe()
    a = wna.Mixture(wna.Uniform(), img, 0.3).describe()
    other = img.clone()
    other[0, 0, 0, 0] += 1e-6  # the same sum to float precision would fool a sum-based key
    assert a == wna.Mixture(wna.Uniform(), img.clone(), 0.3).describe()
    assert a != wna.Mixture(wna.Uniform(), other, 0.3).describe()
    assert a != wna.Mixture(wna.Uniform(), img, 0.3, clip=(0, 1)).describe()
    assert a != wna.Mixture(wna.Gaussian(), img, 0.3).describe()


def test_a_new_noise_kind_is_one_small_class():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Constant(wna.Noise):
        value: float = 0.25
        kind = "constant"

        def sample(self, gen, shape, device, dtype):
            return torch.full(shape, self.value, device=device, dtype=dtype)

    model = wna.build_model("logreg", seed=0)
    ci = wna.classification_images(model, 5000, noise=Constant(), progress=False)
    assert int(ci.counts.max()) == 5000 and Constant().describe() == {"kind": "constant", "value": 0.25}
    assert torch.allclose(ci.images[int(ci.counts.argmax())], torch.full((1, 28, 28), 0.25, dtype=torch.float64))


def test_accumulators_do_not_modify_the_batch():
    """Every accumulator sees the batch as generated, also when stimuli are float64 (no in-place ops)."""
    from wna_helpers.methods.ci import CIAccumulator
    acc = CIAccumulator()
    acc.setup(3, (4,), torch.device("cpu"), {})
    x = torch.randn(5, 4, dtype=torch.float64)
    before = x.clone()
    acc.update(x, torch.randn(5, 3), {}, None)
    assert torch.equal(x, before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_class_sums_equal_the_one_hot_product(dtype):
    """The CI's per-class sums, squares and counts (added row by row on a CPU) equal a float64 one-hot matrix
    product computed here, over two batches, a class that gets no sample included."""
    from wna_helpers.methods.ci import CIAccumulator
    acc = CIAccumulator()
    acc.setup(4, (1, 3, 3), torch.device("cpu"), {})
    g = torch.Generator().manual_seed(0)
    want_sums, want_sq, want_counts = (torch.zeros(4, 9, dtype=torch.float64), torch.zeros(4, 9, dtype=torch.float64),
                                       torch.zeros(4, dtype=torch.int64))
    for b in (7, 33):
        x = torch.rand(b, 1, 3, 3, generator=g, dtype=dtype)
        logits = torch.randn(b, 4, generator=g)
        logits[:, 3] = -10.0                                  # class 3 never wins
        acc.update(x, logits, {}, None)
        onehot = torch.nn.functional.one_hot(logits.argmax(1), 4).T.double()
        xd = x.reshape(b, -1).double()
        want_sums += onehot @ xd
        want_sq += onehot @ xd.square()
        want_counts += onehot.sum(1).long()
    assert torch.equal(acc.acc["counts"], want_counts) and int(want_counts[3]) == 0
    assert torch.allclose(acc.acc["sums"], want_sums, rtol=1e-14, atol=0)
    assert torch.allclose(acc.acc["sumsq"], want_sq, rtol=1e-14, atol=0)


def test_contrast_variance_snr():
    model = wna.build_model("logreg", seed=0)
    ci = wna.classification_images(model, 20_000, progress=False)
    others = (ci.sums.sum(0) - ci.sums[3]) / (ci.n_samples - ci.counts[3])
    assert torch.allclose(ci.contrast[3], ci.images[3] - others)
    assert abs(float(ci.variance.mean()) - 1.0) < 0.05  # N(0, 1) noise, slightly shrunk by selection
    assert ci.snr.shape == ci.images.shape and ci.entropy <= torch.log2(torch.tensor(10.0))


def test_any_input_shape_and_class_count():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 30 * 30, 5))
    ci = wna.classification_images(model, 3000, input_shape=(3, 32, 32), progress=False)
    assert ci.images.shape == (5, 3, 32, 32) and int(ci.counts.sum()) == 3000
    sta = wna.spike_triggered_average(model, "0", 3000, input_shape=(3, 32, 32), progress=False)
    assert sta.pooled.shape == (4, 3, 3, 3)
    assert float(wna.filter_correlation(sta.pooled, model[0].weight).mean()) > 0.9


def test_activation_statistics():
    model = wna.build_model("paper_cnn", seed=0)
    x, y = torch.rand(50, 1, 28, 28), torch.arange(50) % 10
    st = wna.activation_statistics(model, ["conv1", "fc1"], noise=wna.Images(x, y), progress=False, batch_size=7)
    with torch.no_grad():
        ref = model.conv1(x)[y == 3].double().mean(0)
    assert st.group_by == "label" and st.counts.tolist() == [5] * 10
    assert torch.allclose(st.means["conv1"][3], ref, atol=1e-6) and st.means["fc1"].shape == (10, 500)
    noise = wna.activation_statistics(model, "conv2", 5000, progress=False)
    ci = wna.classification_images(model, 5000, progress=False)
    assert noise.group_by == "prediction" and torch.equal(noise.counts, ci.counts)


# ---------------------------------------------------------------- invariances
def test_batch_size_invariance():
    model = wna.build_model("paper_cnn", seed=0)
    a = wna.classification_images(model, 12_345, batch_size=1000, progress=False)
    b = wna.classification_images(model, 12_345, batch_size=4096, progress=False)
    assert torch.equal(a.counts, b.counts) and int(a.counts.sum()) == 12_345
    assert torch.allclose(a.sums, b.sums, rtol=0, atol=1e-9)
    # STA products are summed in float32 within a chunk piece (float64 across): other batch
    # sizes cut the chunks into other pieces, which changes float32 rounding and nothing else
    s1 = wna.spike_triggered_average(model, "conv2", 5000, batch_size=1000, progress=False)
    s2 = wna.spike_triggered_average(model, "conv2", 5000, batch_size=4096, progress=False)
    assert torch.allclose(s1.pooled, s2.pooled, rtol=0, atol=1e-6, equal_nan=True)
    assert torch.allclose(s1.center, s2.center, rtol=0, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("arch,layer", [("paper_cnn", "conv1"), ("paper_cnn", "conv2"), ("net3", "conv1")])
def test_float32_sta_sums_match_the_float64_reference(arch, layer):
    """The float32 chunk sums against the same sums in float64, from the same pass (same noise, same
    activations), for batches inside a chunk, equal to it, and spanning two chunks; ``net3``'s ``conv1`` pads, so
    only the inner positions are pooled and the mean activation adds the frame around them."""
    from wna_helpers.engine.kernel import run_engine
    from wna_helpers.methods.sta import STAAccumulator

    model = wna.build_model(arch, seed=0)
    rf = wna.receptive_field(model, layer)
    for batch in (1000, 4096, 6000):
        fast, ref = STAAccumulator(layer, rf, (1, 28, 28)), STAAccumulator(layer, rf, (1, 28, 28))
        ref.sum_dtype = torch.float64
        run_engine(model, wna.Uniform(), 10_000, [fast, ref], input_shape=(1, 28, 28), batch_size=batch,
                   progress=False)
        for k in ("pooled", "center"):
            got = fast.acc[f"{k}_num"] / fast.acc[f"{k}_den"][:, None]
            want = ref.acc[f"{k}_num"] / ref.acc[f"{k}_den"][:, None]
            live = ref.acc[f"{k}_den"] > 0
            assert live.any()
            err = float((got - want)[live].abs().max())
            assert err < 1e-6 * float(want[live].abs().max()), (batch, k, err)
        assert torch.allclose(fast.acc["act_sum"], ref.acc["act_sum"], rtol=1e-6, atol=0)


@pytest.mark.parametrize("layer", ["conv1", "conv2"])
def test_padded_sta_leaves_the_shared_tap_as_it_found_it(layer):
    """``net3`` pads: its STA zeroes the frame of the map it is handed for the weight-gradient call over the whole
    map, and writes it back where another accumulator reads the same map. Two accumulators on one tap in one run
    give what one alone gives, to the bit, and equal the cropped computation (the pooled positions copied out)."""
    from wna_helpers.engine.kernel import run_engine
    from wna_helpers.methods.convergence import PrefixSnapshots
    from wna_helpers.methods.sta import STAAccumulator, full_map_padding

    model = wna.build_model("net3", seed=0)
    rf = wna.receptive_field(model, layer)
    assert full_map_padding(rf, (28, 28)) == {"conv1": (1, 1), "conv2": (3, 3)}[layer]
    alone = STAAccumulator(layer, rf, (1, 28, 28))
    run_engine(model, wna.Uniform(), 3000, [alone], input_shape=(1, 28, 28), batch_size=1000, progress=False)
    assert alone.owns_taps  # alone in its run: it zeroes the frame and leaves it so
    first, second, cropped = (STAAccumulator(layer, rf, (1, 28, 28)) for _ in range(3))
    cropped.padding = None  # the pooled positions copied out of the map instead
    run_engine(model, wna.Uniform(), 3000, [first, second, cropped], input_shape=(1, 28, 28), batch_size=1000,
               progress=False)
    assert not (first.owns_taps or second.owns_taps or cropped.owns_taps)
    # wrapped for a convergence series, the STA is told what the engine tells the wrapper
    wrapped = PrefixSnapshots(STAAccumulator(layer, rf, (1, 28, 28)), [1500, 3000])
    run_engine(model, wna.Uniform(), 3000, [wrapped], input_shape=(1, 28, 28), batch_size=1000, progress=False)
    assert wrapped.owns_taps and wrapped.inner.owns_taps
    for k, v in alone.acc.items():
        assert torch.equal(first.acc[k], v) and torch.equal(second.acc[k], v), k
        assert torch.allclose(cropped.acc[k], v, rtol=1e-6, atol=1e-9), k
        assert torch.allclose(wrapped.acc[k], v, rtol=1e-6, atol=1e-9), k


def test_prefix_consistency():
    """Sample i is the same for every n: the first n samples of a longer run are the shorter run."""
    model = wna.build_model("logreg", seed=0)
    a = wna.classification_images(model, 5000, progress=False)
    b = wna.classification_images(model, 9000, progress=False)
    conv = wna.ci_convergence(model, [5000, 9000], progress=False, batch_size=333)
    assert torch.equal(conv.snapshot(5000).counts, a.counts) and torch.equal(conv.snapshot(9000).counts, b.counts)
    assert torch.allclose(conv.snapshot(5000).sums, a.sums, atol=1e-9)
    assert torch.allclose(conv.snapshot(9000).sums, b.sums, atol=1e-9)
    # the prefix is shared: the 4,000 samples after it add to it, they do not replace it
    assert bool((b.counts >= a.counts).all()) and int((b.counts - a.counts).sum()) == 4000
    other_seed = wna.classification_images(model, 5000, seed=1, progress=False)
    assert not torch.allclose(other_seed.sums, a.sums, atol=1e-3)


def test_segments_cover_each_sample_once():
    segs = [s for b in batch_segments([0, 2, 4], 10, 47, 0, 7) for s in b]
    covered = [c * 10 + i for c, lo, hi in segs for i in range(lo, hi)]
    assert covered == list(range(0, 10)) + list(range(20, 30)) + list(range(40, 47))
    resumed = [s for b in batch_segments([0, 2, 4], 10, 47, 13, 7) for s in b]
    assert [c * 10 + i for c, lo, hi in resumed for i in range(lo, hi)] == covered[13:]


def test_rank_chunks_match_a_count_of_every_chunk():
    for n, chunk, world in [(47, 10, 1), (47, 10, 2), (50, 10, 3), (9, 10, 2), (4096 * 7 + 1, 4096, 4)]:
        for rank in range(world):
            chunks, mine = rank_chunks(n, chunk, rank, world)
            every = [c for c in range(-(-n // chunk)) if c % world == rank]
            assert list(chunks) == every
            assert mine == sum(min(chunk, n - c * chunk) for c in every)


def test_bookkeeping_is_constant_in_n_samples():
    """10^15 samples: the plan and the first batch of a resumed run cost no memory or time in n."""
    n = 10**15
    chunks, mine = rank_chunks(n, 4096, 1, 2)
    assert isinstance(chunks, range) and mine == n // 2   # 10^15 is a whole, even number of chunks
    first = next(batch_segments(chunks, 4096, n, 4096 * 10**9 + 5, 100))
    assert first[0] == (chunks[10**9], 5, 105)


def _dist_worker(rank, world, init, out):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        model = wna.build_model("paper_cnn", seed=0)
        ci = wna.classification_images(model, 10_000, batch_size=1500, progress=False)
        sta = wna.spike_triggered_average(model, "conv1", 6000, progress=False)
        until = wna.classification_images(wna.build_model("logreg", seed=0), 100_000, until_reliability=0.9,
                                          batch_size=3000, progress=False)
        if rank == 0:
            torch.save({"sums": ci.sums, "counts": ci.counts, "world": ci.world_size, "sta": sta.pooled,
                        "nulls": ci.null_images, "odd": ci.odd_sums, "logit": ci.logit_images,
                        "until_n": until.n_samples, "until_sums": until.sums, "until_nulls": until.null_images}, out)
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_equal_one(tmp_path):
    out = tmp_path / "dist.pt"
    init = f"file://{tmp_path / 'rendezvous'}"
    mp.start_processes(_dist_worker, args=(2, init, str(out)), nprocs=2, join=True, start_method="spawn")
    got = torch.load(out)
    model = wna.build_model("paper_cnn", seed=0)
    one = wna.classification_images(model, 10_000, progress=False)
    sta = wna.spike_triggered_average(model, "conv1", 6000, progress=False)
    assert got["world"] == 2
    assert torch.equal(got["counts"], one.counts)
    assert torch.allclose(got["sums"], one.sums, rtol=0, atol=1e-9)
    assert torch.allclose(got["sta"], sta.pooled, atol=1e-9)
    # the statistics of the same stream (permutation null, split halves, logit images) and a run that
    # stops itself: milestones are counted in chunks of the whole run, whatever the process count
    for name, mine in (("nulls", one.null_images), ("odd", one.odd_sums), ("logit", one.logit_images)):
        assert torch.allclose(got[name], mine, rtol=0, atol=1e-9, equal_nan=True), name
    until = wna.classification_images(wna.build_model("logreg", seed=0), 100_000, until_reliability=0.9,
                                      progress=False)
    assert until.stopped_early and got["until_n"] == until.n_samples == 32_768
    assert torch.allclose(got["until_sums"], until.sums, atol=1e-9)
    assert torch.allclose(got["until_nulls"], until.null_images, atol=1e-9, equal_nan=True)


class Interrupt(Exception):
    pass


def test_resume_equals_uninterrupted(tmp_path):
    model = wna.build_model("paper_cnn", seed=0)
    ckpt = tmp_path / "run.ckpt"
    calls = {"n": 0}

    def stop_after_five(mod, inp):
        calls["n"] += len(inp[0]) == 1000  # batches, not the probes
        if calls["n"] > 5:
            raise Interrupt

    h = model.register_forward_pre_hook(stop_after_five)
    with pytest.raises(Interrupt):
        wna.classification_images(model, 10_000, batch_size=1000, checkpoint=ckpt, checkpoint_every=2,
                                  progress=False)
    h.remove()
    # due after batch 2, written at the next chunk end (sample 4,096, inside batch 5)
    assert ckpt.exists() and torch.load(ckpt)["done"] == 4096
    calls["n"] = 0
    h = model.register_forward_pre_hook(lambda m, i: calls.__setitem__("n", calls["n"] + (len(i[0]) in (1000, 904))))
    resumed = wna.classification_images(model, 10_000, batch_size=1000, checkpoint=ckpt, progress=False)
    h.remove()
    assert calls["n"] == 6  # the six batches left (5,904 samples), probes excluded
    full = wna.classification_images(model, 10_000, batch_size=1000, progress=False)
    assert torch.equal(resumed.counts, full.counts) and torch.allclose(resumed.sums, full.sums, atol=1e-9)
    again = wna.classification_images(model, 10_000, batch_size=1000, checkpoint=ckpt, progress=False)
    assert torch.equal(again.counts, full.counts)  # a finished run is read back
    with pytest.raises(ValueError, match="belongs to another job"):
        wna.classification_images(model, 20_000, checkpoint=ckpt, progress=False)


def test_model_left_as_found():
    model = wna.build_model("paper_cnn", seed=0)
    model.train()
    model(torch.rand(2, 1, 28, 28)).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.fc2.bias.requires_grad_(False)
    wna.classification_images(model, 2000, progress=False)
    wna.spike_triggered_average(model, "conv2", 2000, progress=False)
    wna.activation_statistics(model, ["conv1"], 2000, progress=False)
    assert model.training and not model.fc2.bias.requires_grad
    assert all(torch.equal(p.grad, grads[n]) for n, p in model.named_parameters())
    assert not model._forward_hooks and not model.conv1._forward_hooks and not model.conv2._forward_hooks


PEAK_SCRIPT = """
import resource, sys, torch, wna_helpers as wna
torch.manual_seed(0)
model = wna.build_model("logreg", seed=0)
wna.classification_images(model, 1000, progress=False)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
wna.classification_images(model, int(sys.argv[1]), batch_size=1000, progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base)
"""


def test_peak_memory_flat_in_n():
    """Storing the noise (the paper's code) would grow 3,136 bytes a sample: 565 MB here."""
    def growth_kb(n):
        out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(n)], capture_output=True, text=True,
                             check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        return int(out.stdout.strip().splitlines()[-1])
    small, large = growth_kb(20_000), growth_kb(200_000)
    assert large - small < 30_000, (small, large)  # < 30 MB for 180,000 more samples


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("n", [0, -5, 1.5, True, "10"])
def test_bad_n_samples(n):
    with pytest.raises(ValueError, match="n_samples must be a positive integer"):
        wna.classification_images(wna.build_model("logreg"), n, progress=False)


@pytest.mark.parametrize("make,match", [
    (lambda: wna.Gaussian(std=-1.0), "std must be a finite number >= 0"),
    (lambda: wna.Gaussian(std=float("nan")), "std must be a finite"),
    (lambda: wna.Uniform(1, 0), r"needs low < high, got \[1, 0\]"),
    (lambda: wna.Mixture("uniform", torch.rand(2, 1, 28, 28), 1.5), r"gamma must lie in \[0, 1\]"),
    (lambda: wna.Mixture("uniform", torch.rand(2, 1, 28, 28), -0.1), "gamma must lie"),
    (lambda: wna.Mixture("uniform", torch.rand(0, 1, 28, 28), 0.5), "non-empty tensor"),
    (lambda: wna.Mixture("uniform", torch.rand(2, 1, 28, 28), 0.5, clip=(1, 0)), "clip must be"),
    (lambda: wna.as_stimulus("pink"), r"unknown noise 'pink'.*\['gaussian', 'uniform'\]")])
def test_bad_stimuli(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("kw,match", [
    ({"noise": "pink"}, r"unknown noise 'pink'"), ({"batch_size": 0}, "batch_size must be a positive"),
    ({"noise": wna.Mixture("uniform", torch.rand(2, 1, 32, 32), 0.5)}, r"images have shape \(1, 32, 32\)"),
    ({"input_shape": (3, 32, 32)}, r"cannot take inputs of shape \(N, 3, 32, 32\)"),
    ({"autocast": torch.int8}, "autocast must be"), ({"seed": -1}, "seed must be an integer >= 0"),
    ({"chunk_size": 0}, "chunk_size must be a positive")])
def test_bad_noise_arguments(kw, match):
    model = wna.build_model("paper_cnn")
    calls = {"n": 0}
    model.register_forward_pre_hook(lambda m, i: calls.__setitem__("n", calls["n"] + 1))
    with pytest.raises(ValueError, match=match):
        wna.classification_images(model, 10**9, progress=False, **kw)
    assert calls["n"] <= 1  # rejected before any batch ran (at most the shape probe)


def test_unknown_run_option_lists_the_known_ones():
    with pytest.raises(TypeError, match=r"unknown run option\(s\) \['bach_size'\].*'batch_size', 'seed'"):
        wna.classification_images(wna.build_model("logreg"), 10, bach_size=3)
    run = wna.RunOptions(batch_size=500, progress=False)
    a = wna.classification_images(wna.build_model("logreg", seed=0), 2000, run=run)
    b = wna.classification_images(wna.build_model("logreg", seed=0), 2000, run=run, batch_size=2000)
    assert torch.equal(a.counts, b.counts)


def test_bad_layers():
    model = wna.build_model("paper_cnn")
    with pytest.raises(ValueError, match=r"no layer 'conv9'; available layers: \['conv1', 'relu1'"):
        wna.spike_triggered_average(model, "conv9", 100, progress=False)
    with pytest.raises(ValueError, match=r"'fc1' is a Linear, not a convolution.*\['conv1', 'conv2'\]"):
        wna.spike_triggered_average(model, "fc1", 100, progress=False)
    with pytest.raises(ValueError, match="no layer 'nope'"):
        wna.activation_statistics(model, ["nope"], 100, progress=False)
    with pytest.raises(ValueError, match="n_samples must be a positive integer when the stimulus is noise"):
        wna.spike_triggered_average(model, "conv1", progress=False)
    with pytest.raises(ValueError, match="only 5 images were given"):
        wna.spike_triggered_average(model, "conv1", 6, noise=wna.Images(torch.rand(5, 1, 28, 28)), progress=False)
    with pytest.raises(ValueError, match="group_by='label' needs real images with labels"):
        wna.activation_statistics(model, ["conv1"], 100, group_by="label", progress=False)


def test_string_padding_is_a_clear_error():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding="same"), nn.ReLU(), nn.Conv2d(2, 2, 3), nn.Flatten(),
                          nn.Linear(2 * 26 * 26, 3))
    with pytest.raises(ValueError, match=r"padding='same' is not supported for receptive fields"):
        wna.receptive_field(model, "2")


def test_device_mismatch():
    with pytest.raises(ValueError, match="model's parameters are on cpu"):
        wna.classification_images(wna.build_model("logreg"), 10, device="cuda:0", progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_shapes_and_counts():
    model = wna.build_model("paper_cnn", seed=0).cuda()
    ci = wna.classification_images(model, 100_000, progress=False)
    assert int(ci.counts.sum()) == 100_000 and ci.images.device.type == "cpu"
    bf = wna.classification_images(model, 100_000, autocast=torch.bfloat16, progress=False)
    assert int(bf.counts.sum()) == 100_000
    sta = wna.spike_triggered_average(model, "conv1", 50_000, progress=False)
    assert float(wna.filter_correlation(sta.pooled, model.conv1.weight.cpu()).mean()) > 0.95


def test_cli_prints_counts(tmp_path):
    out = tmp_path / "ci.pt"
    res = subprocess.run([sys.executable, "-m", "wna_helpers", "ci", "--arch", "logreg", "--untrained",
                          "--n-samples", "3000", "--device", "cpu", "--out", str(out), "--no-progress"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    assert "class 0 (0):" in res.stdout and "n=3000" in res.stdout
    blob = torch.load(out, weights_only=False)
    assert int(blob["counts"].sum()) == 3000 and blob["images"].shape == (10, 1, 28, 28)
    bad = subprocess.run([sys.executable, "-m", "wna_helpers", "sta", "--arch", "paper_cnn", "--untrained",
                          "--layer", "fc1", "--n-samples", "10", "--out", str(out)], capture_output=True, text=True)
    assert bad.returncode != 0 and "not a convolution" in bad.stderr


@pytest.mark.parametrize("args,match", [(["--n-samples", "-5"], "n_samples must be a positive integer"),
                                        (["--n-samples", "10", "--noise", "gaussian", "--std", "-1"],
                                         "std must be a finite number"),
                                        (["--n-samples", "10", "--noise", "uniform", "--low", "2"], "low < high")])
def test_cli_bad_value_is_a_message_not_a_traceback(tmp_path, args, match):
    res = subprocess.run([sys.executable, "-m", "wna_helpers", "ci", "--arch", "logreg", "--untrained",
                          "--device", "cpu", "--out", str(tmp_path / "x.pt"), *args], capture_output=True, text=True)
    assert res.returncode == 2 and match in res.stderr and "Traceback" not in res.stderr


def test_cli_seeds_are_separate(tmp_path):
    """--init-seed chooses the untrained weights, --seed the noise: changing one keeps the other."""
    def run(*extra):
        out = tmp_path / "ci.pt"
        subprocess.run([sys.executable, "-m", "wna_helpers", "ci", "--arch", "logreg", "--untrained", "--device", "cpu",
                        "--n-samples", "2000", "--out", str(out), "--no-progress", *extra], check=True, cwd=ROOT,
                       capture_output=True)
        return torch.load(out, weights_only=False)
    base, noise1, init1 = run(), run("--seed", "1"), run("--init-seed", "1")
    model = wna.build_model("logreg", seed=0)
    ci = lambda m, **kw: wna.classification_images(m, 2000, noise="uniform", progress=False, **kw).counts  # noqa: E731
    assert torch.equal(base["counts"], ci(model))   # the CLI's default noise for a zoo model: U[0, 1]
    assert torch.equal(noise1["counts"], ci(model, seed=1))
    other = wna.build_model("logreg", seed=1)
    assert torch.equal(init1["counts"], ci(other))


@pytest.mark.parametrize("arch", ["paper_cnn", "net3"])
def test_sta_mean_activation_is_the_mean_relu_over_every_position(arch):
    """Known answer on fixed images: the mean activation of ``conv1`` over all positions (``net3`` pads, so its
    pooled positions are an inner crop and the rest come from the frame around it), and the pooled weight over
    the inner positions alone."""
    model = wna.build_model(arch, seed=0).eval()
    images = torch.rand(300, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    sta = wna.spike_triggered_average(model, "conv1", noise=wna.Images(images), batch_size=128, progress=False)
    with torch.no_grad():
        a = torch.relu(model.conv1(images.double().to(torch.float32))).double()
    assert torch.allclose(sta.mean_activation, a.mean((0, 2, 3)), rtol=1e-6, atol=1e-9)
    r, c = sta.rf.inside((28, 28))
    assert torch.allclose(sta.pooled_weight, a[:, :, r.start:r.stop, c.start:c.stop].sum((0, 2, 3)), rtol=1e-6)
    assert (len(r), len(c)) == ((26, 26) if arch == "net3" else (24, 24))
