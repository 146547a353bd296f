import pytest
import torch
from torch import nn

import wna_helpers as wna

EXPECTED_PARAMS = {"logreg": 784 * 10 + 10, "mlp": 784 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10}


@pytest.mark.parametrize("name", wna.model_names())
def test_output_shape_and_taps(name):
    model = wna.build_model(name, seed=0)
    seen = {}
    for lname, mod in model.named_children():
        mod.register_forward_hook(lambda m, i, o, n=lname: seen.__setitem__(n, o.shape))
    out = model(torch.rand(3, 1, 28, 28))
    assert out.shape == (3, 10)
    assert set(seen) == {n for n, _ in model.named_children()}  # every named layer can be tapped
    assert "fc1" in seen and "flatten" in seen
    if name in wna.CNN_NAMES:
        assert wna.conv_layer_names(model)[0] == "conv1"
        assert seen["conv1"][1] == model.conv1.out_channels


@pytest.mark.parametrize("name", wna.model_names())
def test_wrong_shape_names_expected(name):
    model = wna.build_model(name)
    with pytest.raises(ValueError, match=r"expects input of shape \(N, 1, 28, 28\), got \(2, 3, 32, 32\)"):
        model(torch.zeros(2, 3, 32, 32))


def test_unknown_model_lists_names():
    with pytest.raises(ValueError, match="unknown model 'resnet'.*paper_cnn.*logreg"):
        wna.build_model("resnet")


def test_architectures():
    m = wna.build_model("paper_cnn")
    assert (m.conv1.out_channels, m.conv1.kernel_size, m.conv2.out_channels) == (20, (5, 5), 50)
    assert (m.fc1.in_features, m.fc1.out_features, m.fc2.out_features) == (800, 500, 10)
    assert isinstance(m.pool1, nn.MaxPool2d)
    le = wna.build_model("lenet")
    assert isinstance(le.pool1, nn.AvgPool2d) and le.fc1.in_features == 768 and le.fc3.in_features == 84
    net3 = wna.build_model("net3")
    assert net3.fc1.in_features == 128 * 3 * 3 and net3.conv3.padding == (1, 1)
    alex = wna.build_model("alexnet_small")
    assert alex.fc1.in_features == 64 * 16 * 16 and alex.pool1.stride == 1 and alex.pool1.kernel_size == 3
    for name, n in EXPECTED_PARAMS.items():
        assert sum(p.numel() for p in wna.build_model(name).parameters()) == n


def test_seeded_build_is_reproducible_and_keeps_global_rng():
    torch.manual_seed(5)
    state = torch.get_rng_state()
    a, b = wna.build_model("lenet", seed=1), wna.build_model("lenet", seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_layer_table():
    rows = wna.layer_table(wna.build_model("paper_cnn"))
    by = {r["name"]: r for r in rows}
    assert by["conv1"]["output_shape"] == (20, 24, 24) and by["pool2"]["output_shape"] == (50, 4, 4)
    assert by["conv1"]["params"] == 20 * 25 + 20
    assert sum(r["params"] for r in rows) == 431080
    assert [r["name"] for r in rows][-1] == "fc2"


def test_gru_reads_rows_and_its_cis_are_batch_size_invariant():
    """The recurrent model reads the image row by row (its last hidden state sees every row) and its CIs,
    like every model's, do not depend on the batch size."""
    model = wna.build_model("gru", seed=0)
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        base = model(x)
        for row in (0, 27):  # the first and the last row both change the output
            y = x.clone()
            y[:, :, row] = 1 - y[:, :, row]
            assert not torch.allclose(model(y), base)
        y = x.clone()
        y[:, :, :, 0] = 1 - y[:, :, :, 0]  # so does a column (it is a feature of every step)
        assert not torch.allclose(model(y), base)
    a = wna.classification_images(model, 3000, noise="uniform", batch_size=3000, progress=False)
    b = wna.classification_images(model, 3000, noise="uniform", batch_size=97, progress=False)
    assert torch.equal(a.counts, b.counts)
    assert torch.allclose(a.sums, b.sums, rtol=0, atol=1e-9)
    assert wna.layer_table(model)[1] == {"name": "gru", "type": "RowGRU", "output_shape": (128,), "params": 60672}
