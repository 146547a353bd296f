"""The CPU's uniform noise (engine.host_noise): its distribution, its seeding and its independence of threads."""
import hashlib
import multiprocessing as mp

import pytest
import torch

import wna_helpers as wna
from wna_helpers.engine import host_noise
from wna_helpers.engine.host_noise import BLOCK_ELEMENTS, uniform_


def draw(n: int, seed: int = 0) -> torch.Tensor:
    return uniform_(torch.empty(n), torch.Generator().manual_seed(seed))


def test_values_are_uniform_on_the_unit_interval():
    x = draw(3 * BLOCK_ELEMENTS + 1000).double()   # several streams and a short last block
    assert float(x.min()) >= 0.0 and float(x.max()) < 1.0
    n = len(x)
    assert abs(float(x.mean()) - 0.5) < 4 * (1 / 12 / n) ** 0.5
    assert abs(float(x.var()) - 1 / 12) < 1e-3
    counts = torch.histc(x, bins=100, min=0, max=1)
    chi2 = float(((counts - n / 100) ** 2 / (n / 100)).sum())
    assert chi2 < 148.2   # the chi-square distribution's 0.999 quantile at 99 degrees of freedom
    # 24 random bits a value, as torch.rand: every value is a multiple of 2^-24
    assert torch.equal(x * 2**24, (x * 2**24).round())


def test_blocks_are_different_streams():
    x = draw(2 * BLOCK_ELEMENTS).view(2, -1).double()
    assert not torch.equal(x[0], x[1])
    r = torch.corrcoef(x)[0, 1]
    assert abs(float(r)) < 4 / BLOCK_ELEMENTS ** 0.5


def test_same_generator_state_same_noise_and_the_generator_moves_on():
    assert torch.equal(draw(1000, seed=3), draw(1000, seed=3))
    assert not torch.equal(draw(1000, seed=3), draw(1000, seed=4))
    gen = torch.Generator().manual_seed(5)
    a, b = uniform_(torch.empty(1000), gen), uniform_(torch.empty(1000), gen)
    assert not torch.equal(a, b)


def test_the_noise_does_not_depend_on_threads(monkeypatch):
    n = 4 * BLOCK_ELEMENTS + 17
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = draw(n)
        torch.set_num_threads(max(threads, 2))
        many = draw(n)
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setattr(host_noise, "THREADED_MIN", 10 * n)   # the calling thread alone
    assert torch.equal(one, many) and torch.equal(one, draw(n))


def _digest(x: torch.Tensor) -> str:
    return hashlib.sha256(x.numpy().tobytes()).hexdigest()


def _child(q) -> None:
    q.put(_digest(draw(2 * BLOCK_ELEMENTS)))   # a string: a tensor would travel as shared memory


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs fork")
def test_a_forked_process_fills_as_its_parent():
    parent = draw(2 * BLOCK_ELEMENTS)           # the parent's thread pool exists before the fork
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q,))
    p.start()
    got = q.get(timeout=60)
    p.join(timeout=60)
    assert p.exitcode == 0 and got == _digest(parent)


@pytest.mark.parametrize("bad", [torch.empty(4, dtype=torch.float64), torch.empty(4, 4).t(),
                                 torch.empty(4, dtype=torch.bfloat16)])
def test_bad_tensors_are_refused(bad):
    with pytest.raises(ValueError, match="contiguous float32 CPU tensor"):
        uniform_(bad, torch.Generator())


def test_uniform_chunks_come_from_it_on_the_cpu():
    cpu = torch.device("cpu")
    x, _ = wna.Uniform().chunk(2, seed=7, chunk_size=64, input_shape=(1, 8, 8), device=cpu)
    gen = torch.Generator().manual_seed(wna.engine.stimuli.chunk_seed(7, 2))
    assert torch.equal(x, uniform_(torch.empty(64, 1, 8, 8), gen))
    wide, _ = wna.Uniform(-1, 3).chunk(2, seed=7, chunk_size=64, input_shape=(1, 8, 8), device=cpu)
    assert torch.allclose(wide, x * 4 - 1)
    x64, _ = wna.Uniform().chunk(2, seed=7, chunk_size=64, input_shape=(1, 8, 8), device=cpu, dtype=torch.float64)
    assert x64.dtype == torch.float64 and float(x64.min()) >= 0 and float(x64.max()) <= 1
