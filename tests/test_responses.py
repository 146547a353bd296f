"""Classification images from recorded responses: identical to a network run on the same trials, and clear errors."""
from __future__ import annotations

import pytest
import torch

import wna_helpers as wna
from wna_helpers.methods.responses import classification_images_from_responses


def _same(a: wna.ClassificationImages, b: wna.ClassificationImages, logits: bool = True) -> None:
    assert torch.equal(a.counts, b.counts) and a.n_samples == b.n_samples and a.stimulus == b.stimulus
    for name in ("sums", "sumsq", "null_images", "odd_sums") + (("logit_images",) if logits else ()):
        x, y = getattr(a, name), getattr(b, name)
        assert torch.allclose(x, y, rtol=0, atol=1e-9, equal_nan=True), name
    assert torch.equal(a.odd_counts, b.odd_counts)


def _model() -> torch.nn.Module:
    return wna.build_model("logreg", seed=0, input_shape=(1, 6, 6), num_classes=4).eval()


def test_a_network_answering_through_the_response_path_gives_its_own_run():
    """Regenerated seeded trials: the network's answers as responses, its logits as scores, give exactly the
    network run (counts, sums, the permutation null, the odd/even split, the logit images); without the scores
    everything but the logit images."""
    model = _model()
    n, shape = 9_000, (1, 6, 6)                           # three chunks of 4,096, the last partial
    run = wna.classification_images(model, n, noise="uniform", input_shape=shape, seed=7, progress=False,
                                    batch_size=1000)
    x = torch.cat([wna.Uniform().chunk(c, seed=7, chunk_size=4096, input_shape=shape,
                                       device=torch.device("cpu"))[0] for c in range(3)])[:n]
    with torch.no_grad():
        logits = model(x)
    said = logits.argmax(1)
    _same(classification_images_from_responses("uniform", said, num_classes=4, input_shape=shape, seed=7,
                                               scores=logits), run)
    _same(classification_images_from_responses("uniform", said, num_classes=4, input_shape=shape, seed=7), run,
          logits=False)
    # the trials as a tensor: the network run on those images
    img = wna.classification_images(model, n, noise=wna.Images(x), input_shape=shape, seed=7, progress=False)
    _same(classification_images_from_responses(x, said, num_classes=4, seed=7, scores=logits), img)


def test_responses_give_significance_and_reliability_like_a_run():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8192, 1, 5, 5, generator=g)
    said = (x[:, 0, 2, 2] > 0.5).long()                   # an observer that reads the centre pixel
    ci = classification_images_from_responses(x, said)
    sig = ci.significant(0.05)
    assert sig[:, 0, 2, 2].all() and int(sig.sum()) <= 4  # the centre pixel, (almost) nothing else
    assert bool((ci.reliability > 0.5).all())


def test_bad_responses_are_refused_with_what_was_wrong():
    x = torch.rand(10, 1, 3, 3)
    with pytest.raises(ValueError, match="there are 10 trials but 9 responses"):
        classification_images_from_responses(x, torch.zeros(9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\); got values from -1"):
        classification_images_from_responses(x, torch.tensor([-1] + [1] * 9), num_classes=2)
    with pytest.raises(ValueError, match="1-d integer tensor"):
        classification_images_from_responses(x, torch.rand(10))
    with pytest.raises(ValueError, match="scores must agree with the responses"):
        classification_images_from_responses(x, torch.zeros(10, dtype=torch.long),
                                             scores=torch.tensor([[0.0, 1.0]] * 10))
    with pytest.raises(ValueError, match="seeded stimulus"):
        classification_images_from_responses(wna.Images(x), torch.zeros(10, dtype=torch.long))
    with pytest.raises(ValueError, match="value_range|range"):
        classification_images_from_responses(x + 2, torch.zeros(10, dtype=torch.long))


# ---------------------------------------------------------------- trials out, answers in

from wna_helpers.methods.trials import export_trials, quantise, read_responses, read_trial_images  # noqa: E402


def test_png_round_trip_gives_the_network_run_on_what_the_files_hold(tmp_path):
    """A model answers the exported PNG files; the CI from its answers equals its own run on the 8-bit trials, and
    the 8-bit trials lie within 1/510 of the float ones (the quantisation error, stated in the chapter)."""
    model = _model()
    shape, n = (1, 6, 6), 5000
    path = export_trials("uniform", tmp_path / "exp", n=n, seed=3, input_shape=shape, scale=2,
                         description="which of four?")
    seen = read_trial_images(path.parent)
    x = torch.cat([wna.Uniform().chunk(c, seed=3, chunk_size=4096, input_shape=shape,
                                       device=torch.device("cpu"))[0] for c in range(2)])[:n]
    assert seen.shape == (n, *shape) and torch.equal(seen, quantise(x))
    assert float((seen - x).abs().max()) <= 1 / 510 + 1e-7
    with torch.no_grad():
        said = model(seen).argmax(1)
        changed = float((model(x).argmax(1) != said).double().mean())
    assert changed < 0.05                                  # 8 bits move few answers of this model
    answers = tmp_path / "answers.csv"
    answers.write_text("trial,response,rt\n" + "".join(f"{i},{int(r)},0.{i % 9 + 1}\n" for i, r in enumerate(said)))
    got, rt = read_responses(answers, n)
    assert torch.equal(got, said) and rt is not None and rt[0] == pytest.approx(0.1)
    from_files = classification_images_from_responses(seen, got, num_classes=4, seed=3)
    direct = wna.classification_images(model, n, noise=wna.Images(seen), input_shape=shape, seed=3, progress=False)
    _same(from_files, direct, logits=False)
    lines = path.read_text().splitlines()
    assert lines[0] == "trial,file,seed,chunk_size,scale,stimulus,description" and len(lines) == n + 1
    import csv
    import json
    first = next(csv.DictReader(path.open()))
    assert json.loads(first["stimulus"]) == direct_uniform_description(3) and first["description"] == "which of four?"


def direct_uniform_description(seed: int) -> dict:
    """How a network run of uniform noise with this seed describes its stimuli."""
    return wna.classification_images(_model(), 10, noise="uniform", input_shape=(1, 6, 6), seed=seed,
                                     progress=False, null_permutations=0).stimulus


def test_export_writes_all_or_nothing_and_refuses_what_it_cannot_write(tmp_path):
    export_trials(torch.rand(3, 1, 4, 4), tmp_path / "a")
    with pytest.raises(ValueError, match="exists"):
        export_trials(torch.rand(3, 1, 4, 4), tmp_path / "a")
    with pytest.raises(ValueError, match="8-bit file holds pixels in"):
        export_trials("gaussian", tmp_path / "b", n=3, input_shape=(1, 4, 4))
    with pytest.raises(ValueError, match="number of trials n"):
        export_trials("uniform", tmp_path / "c", input_shape=(1, 4, 4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]   # nothing half-written beside it


def test_read_responses_names_missing_duplicate_and_unknown_trials(tmp_path):
    p = tmp_path / "r.csv"

    def read(text: str, **kw):
        p.write_text(text)
        return read_responses(p, 3, **kw)
    with pytest.raises(ValueError, match="1 of 3 trials have no answer \\(first: 2\\)"):
        read("trial,response\n0,1\n1,0\n")
    with pytest.raises(ValueError, match="line 3: trial 0 is answered twice"):
        read("trial,response\n0,1\n0,0\n2,1\n")
    with pytest.raises(ValueError, match="line 2: unknown trial 7; the experiment has trials 0 to 2"):
        read("trial,response\n7,1\n")
    with pytest.raises(ValueError, match="needs the columns 'trial' and 'response'"):
        read("id,answer\n0,1\n")
    with pytest.raises(ValueError, match="'shirt' is not one of the classes"):
        read("trial,response\n0,shirt\n1,T-shirt\n2,T-shirt\n", classes=["T-shirt", "Shirt"])
    got, rt = read("trial,response\n2,Shirt\n0,T-shirt\n1,Shirt\n", classes=["T-shirt", "Shirt"])
    assert got.tolist() == [0, 1, 1] and rt is None
