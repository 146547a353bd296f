"""The command line: the book's protocol by default, a user's own model, every bad value a message and exit 2."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import wna_helpers as wna
from wna_helpers.__main__ import main

from conftest import ROOT, needs_data



def _fail(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


BASE = ["ci", "--arch", "logreg", "--untrained", "--n-samples", "100", "--device", "cpu", "--no-progress"]


@pytest.mark.parametrize("extra, phrase", [
    (["--device", "foo"], "is not a device"),
    (["--device", "cuda:7"] if torch.cuda.is_available() else ["--device", "cuda"],
     "CUDA device" if torch.cuda.is_available() else "no CUDA device"),
    (["--profile", "quick"], "no effect with --untrained"),
    (["--input-shape", "1,28,28"], "--input-shape is for --model"),
    (["--std", "2"], "--std sets gaussian noise"),
    (["--noise", "uniform", "--low", "2"], "low < high"),
    (["--n-samples", "0"], "n_samples must be a positive integer"),
])
def test_bad_values_exit_2_with_a_message(tmp_path, capsys, extra, phrase):
    err = _fail(capsys, [*BASE, "--out", str(tmp_path / "x.pt"), *extra])
    assert phrase in err


def test_the_output_path_is_checked_before_the_run(tmp_path, capsys, monkeypatch):
    ran = []
    monkeypatch.setattr("wna_helpers.__main__.classification_images", lambda *a, **k: ran.append(1))
    assert "is a folder" in _fail(capsys, [*BASE, "--out", str(tmp_path)])
    assert "does not exist" in _fail(capsys, [*BASE, "--out", str(tmp_path / "no" / "x.pt")])
    if os.geteuid() != 0:   # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert "not writable" in _fail(capsys, [*BASE, "--out", str(locked / "x.pt")])
    assert ran == []


def test_zoo_models_default_to_the_books_uniform_noise(tmp_path):
    out = tmp_path / "ci.pt"
    assert main([*BASE, "--out", str(out)]) == 0
    blob = torch.load(out, weights_only=False)
    assert blob["noise"] == wna.Uniform().describe()
    ref = wna.classification_images(wna.build_model("logreg", seed=0), 100, noise="uniform", progress=False)
    assert torch.equal(blob["counts"], ref.counts)


@needs_data
def test_matched_and_sinusoid_noise(tmp_path):
    for kind in ("matched", "sinusoid"):
        out = tmp_path / f"{kind}.pt"
        assert main([*BASE, "--noise", kind, "--out", str(out)]) == 0
        assert torch.load(out, weights_only=False)["noise"]["kind"] == ("gaussian" if kind == "matched" else kind)


def test_a_users_torchscript_model(tmp_path, capsys):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).eval()
    torch.manual_seed(0)
    path = tmp_path / "mine.pt"
    torch.jit.save(torch.jit.trace(model, torch.zeros(2, 3, 2, 2)), str(path))
    out = tmp_path / "ci.pt"
    common = ["ci", "--model", str(path), "--n-samples", "500", "--device", "cpu", "--no-progress", "--out", str(out)]
    assert "--noise is required with --model" in _fail(capsys, [*common, "--input-shape", "3,2,2"])
    assert "needs --input-shape" in _fail(capsys, [*common, "--noise", "uniform"])
    assert "cannot take a batch" in _fail(capsys, [*common, "--noise", "uniform", "--input-shape", "1,2,2"])
    assert "fitted to --dataset" in _fail(capsys, [*common, "--noise", "gabor", "--input-shape", "3,2,2"])
    assert main([*common, "--noise", "uniform", "--input-shape", "3,2,2"]) == 0
    ref = wna.classification_images(model, 500, noise="uniform", input_shape=(3, 2, 2), progress=False)
    assert torch.equal(torch.load(out, weights_only=False)["counts"], ref.counts)


def test_a_file_that_is_no_model_is_a_message(tmp_path, capsys):
    bad = tmp_path / "junk.pt"
    bad.write_bytes(b"not a model")
    err = _fail(capsys, ["ci", "--model", str(bad), "--input-shape", "1,2,2", "--noise", "uniform", "--n-samples",
                         "10", "--out", str(tmp_path / "x.pt")])
    assert "neither a TorchScript file" in err and str(bad) in err
    good = tmp_path / "cut.pt"
    torch.jit.save(torch.jit.trace(torch.nn.Linear(2, 2), torch.zeros(1, 2)), str(good))
    good.write_bytes(good.read_bytes()[:-200])   # truncated: still says which file and what it is
    err = _fail(capsys, ["ci", "--model", str(good), "--input-shape", "2", "--noise", "uniform", "--n-samples",
                         "10", "--out", str(tmp_path / "x.pt")])
    assert str(good) in err


def test_sta_of_a_users_model_says_why_not(tmp_path, capsys):
    err = _fail(capsys, ["sta", "--model", str(tmp_path / "m.pt"), "--n-samples", "10", "--out", str(tmp_path / "x.pt")])
    assert "TorchScript and exported models" in err


def test_the_module_runs_as_a_program(tmp_path):
    res = subprocess.run([sys.executable, "-m", "wna_helpers", *BASE, "--device", "foo", "--out",
                          str(tmp_path / "x.pt")], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2 and "is not a device" in res.stderr and "Traceback" not in res.stderr


def test_a_users_exported_model(tmp_path, capsys):
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    x = torch.zeros(4, 1, 2, 2)
    out = tmp_path / "ci.pt"
    common = ["ci", "--n-samples", "300", "--device", "cpu", "--no-progress", "--noise", "uniform",
              "--input-shape", "1,2,2", "--out", str(out)]
    fixed = tmp_path / "fixed.pt2"
    torch.export.save(torch.export.export(model, (x,)), str(fixed))   # the batch size frozen at 4
    assert "dynamic batch dimension" in _fail(capsys, [*common, "--model", str(fixed)])
    dynamic = tmp_path / "dynamic.pt2"
    torch.export.save(torch.export.export(model, (x,), dynamic_shapes={"input": {0: torch.export.Dim("batch")}}),
                      str(dynamic))
    assert main([*common, "--model", str(dynamic)]) == 0
    ref = wna.classification_images(model, 300, noise="uniform", input_shape=(1, 2, 2), progress=False)
    assert torch.equal(torch.load(out, weights_only=False)["counts"], ref.counts)
