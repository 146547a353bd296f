"""The training forward that max-pools before the ReLU gives the model's numbers, bit for bit."""
import pytest
import torch
from torch import nn

import wna_helpers as wna
from wna_helpers.zoo.pool_first import commuting_pairs, pool_before_relu


def _grads(forward, model, x):
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    out = forward(x)
    # a loss whose gradient differs from element to element, negative ones included
    (out * torch.linspace(-1, 2, out.shape[1])).sum().backward()
    return out.detach(), x.grad, {k: p.grad.clone() for k, p in model.named_parameters()}


@pytest.mark.parametrize("arch", ["paper_cnn", "net3", "alexnet_small"])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_pooling_first_gives_the_same_logits_and_gradients_bit_for_bit(arch, layout):
    model = wna.build_model(arch, seed=1).to(memory_format=layout).train()
    assert commuting_pairs(model)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 1, 28, 28, generator=gen)
    # ties within pooling windows, positive and negative, and exact zeros: round the input to a few levels
    x[8:] = torch.round(x[8:] * 2) / 2
    x = x.contiguous(memory_format=layout)
    fast = pool_before_relu(model)
    out_a, gx_a, gw_a = _grads(model, model, x)
    out_b, gx_b, gw_b = _grads(fast, model, x)
    assert torch.equal(out_a, out_b) and torch.equal(gx_a, gx_b)
    assert all(torch.equal(gw_a[k], gw_b[k]) for k in gw_a)
    # a first layer of zeros: every pooling window a tie, its maximum 0
    with torch.no_grad():
        model.conv1.weight.zero_()
        model.conv1.bias.fill_(-0.0)
    out_a, gx_a, gw_a = _grads(model, model, x)
    out_b, gx_b, gw_b = _grads(fast, model, x)
    assert torch.equal(out_a, out_b) and all(torch.equal(gw_a[k], gw_b[k]) for k in gw_a)


def test_which_models_are_reordered():
    paper = wna.build_model("paper_cnn", seed=0)
    assert commuting_pairs(paper) == [1, 4]            # relu1 -> pool1, relu2 -> pool2
    assert pool_before_relu(wna.build_model("lenet", seed=0)) is None     # average pooling does not commute
    assert pool_before_relu(wna.build_model("mlp", seed=0)) is None
    assert commuting_pairs(nn.Sequential(nn.ReLU(), nn.MaxPool2d(2, return_indices=True))) == []

    class Custom(nn.Sequential):                       # a subclass may compute something else in forward
        def forward(self, x):
            return super().forward(x) * 2
    assert pool_before_relu(Custom(nn.ReLU(), nn.MaxPool2d(2))) is None
    # a hooked module sees the tensors it expects: its pair is left alone, and a hook on the model stops it all
    h = paper.relu1.register_forward_hook(lambda m, i, o: None)
    assert commuting_pairs(paper) == [4]
    h.remove()
    h = paper.register_forward_pre_hook(lambda m, i: None)
    assert pool_before_relu(paper) is None
    h.remove()
    h = nn.modules.module.register_module_forward_hook(lambda m, i, o: None)
    try:
        assert pool_before_relu(paper) is None
    finally:
        h.remove()
    # the Classifier still checks its input
    with pytest.raises(ValueError, match=r"expects input of shape \(N, 1, 28, 28\)"):
        pool_before_relu(paper)(torch.zeros(2, 1, 27, 27))


def test_train_pools_first_and_trains_the_same_weights_as_the_model_in_its_own_order():
    """``wna.train`` with the reordered forward and without it (a hook on the model turns it off) end with the same
    weights, bit for bit, and only the first pooled before the ReLU."""
    gen = torch.Generator().manual_seed(0)
    data = wna.Dataset(torch.rand(300, 1, 28, 28, generator=gen) - 0.5, torch.randint(10, (300,), generator=gen),
                       tuple(str(i) for i in range(10)), "noise", "train")
    states, pool_inputs = [], []
    for hooked in (False, True):
        model = wna.build_model("paper_cnn", seed=2)
        if hooked:
            model.register_forward_hook(lambda m, i, o: None)
        calls: list[bool] = []
        pool = model.pool1.forward   # watched without a hook (a hook would stop its pair): is its input >= 0?
        model.pool1.forward = lambda x: (calls.append(bool((x >= 0).all())), pool(x))[1]
        wna.train(model, data, epochs=2, batch_size=50, seed=3, progress=False, device="cpu")
        del model.pool1.forward
        pool_inputs.append(calls)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert pool_inputs[0] and not any(pool_inputs[0])     # pooled first: negative inputs reached the pool
    assert pool_inputs[1] and all(pool_inputs[1])         # the model's own order: the ReLU ran first
