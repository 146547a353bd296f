"""The reader as the observer, without a browser: the two-class trials as a list and their CIs from recorded
answers (identical to a network run), the task's file (answers saved as they come, resumed, checked), its block
summary, and the widget's Python side. ``test_observer_browser.py`` drives the widget in a real browser."""
from __future__ import annotations

import csv
import json
import math

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from wna_helpers.applications.observer import stimulus_normal  # noqa: E402
from wna_helpers.applications.observer_task import ANSWER_COLUMNS, ObserverTask  # noqa: E402
from wna_helpers.book.observer_widget import ObserverWidget, summary_html  # noqa: E402
from wna_helpers.engine.atomic import atomic_write_bytes  # noqa: E402
from wna_helpers.methods.trials import read_responses  # noqa: E402
from wna_helpers.methods.two_class import CHUNK_SIZE, two_class_ci  # noqa: E402
from wna_helpers.methods.two_class_trials import (two_class_from_responses, two_class_reliability,  # noqa: E402
                                                  two_class_trials)


def _bars() -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.zeros(1, 1, 8, 8)
    a[..., 1:7, 3:5] = 1
    b = torch.zeros(1, 1, 8, 8)
    b[..., 3:5, 1:7] = 1
    return a, b


def _net(a: torch.Tensor, b: torch.Tensor, classes: tuple[int, int] = (0, 1), k: int = 2) -> nn.Module:
    """Logits ``<x, a - b>`` for class ``classes[0]``, ``<x, b - a>`` for ``classes[1]``, 0 for the rest."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(a.numel(), k))
    with torch.no_grad():
        net[1].weight.zero_()
        net[1].bias.zero_()
        net[1].weight[classes[0]] = (a - b).flatten()
        net[1].weight[classes[1]] = (b - a).flatten()
    return net


def _person(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, internal: float = 1.0) -> torch.Tensor:
    """A template observer with internal noise: choice 0 (A) or 1 (B) per stimulus."""
    t = (a - b).flatten()
    t = t / t.norm()
    m = (x.flatten(1) - 0.5) @ t
    d = m + internal * float(m.std()) * stimulus_normal(x).float()
    return (d <= 0).long()


# ---------------------------------------------------------------------------------------------- trials and CIs
@pytest.mark.parametrize("batch_size", [1, 700, 5000])
def test_a_network_answering_the_listed_trials_gives_its_own_run_exactly(batch_size):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    a, b = torch.rand(3, 1, 8, 8), torch.rand(2, 1, 8, 8)
    n = 2 * CHUNK_SIZE + 77                                      # a chunk cut short at the end
    run = two_class_ci(net, a, b, classes=(5, 6), weight=0.2, n_samples=n, seed=4, batch_size=batch_size)
    trials = two_class_trials(a, b, classes=(5, 6), weight=0.2, n_samples=n, seed=4)
    with torch.no_grad():
        lg = net(trials.stimuli)
    said = torch.where(lg[:, 6] > lg[:, 5], 6, 5)
    got = two_class_from_responses(trials, said)
    for f in ("counts", "sums", "sumsq", "noise_sums", "noise_sumsq"):
        assert torch.equal(getattr(got, f), getattr(run, f)), f
    assert got.stimulus == run.stimulus and got.n_samples == run.n_samples and got.classes == (5, 6)
    # the first m trials are the first m of the run of m trials (chunks are seeded one by one)
    short = two_class_trials(a, b, classes=(5, 6), weight=0.2, n_samples=100, seed=4)
    assert torch.equal(short.stimuli, trials.stimuli[:100]) and torch.equal(short.true, trials.true[:100])
    head = two_class_from_responses(trials, said[:100])
    assert torch.equal(head.sums, two_class_from_responses(short, said[:100]).sums)


def test_trials_are_the_design():
    a, b = _bars()
    t = two_class_trials(a, b, weight=0.3, n_samples=1000, seed=1)
    img = torch.where(t.true.view(-1, 1, 1, 1) == 0, a, b)
    assert torch.allclose(t.stimuli, 0.7 * t.noise + 0.3 * img, atol=1e-6)
    assert int(t.true.sum()) in range(480, 521) and float(t.noise.min()) >= 0 and float(t.noise.max()) <= 1
    assert len(t.head(10)) == 10
    with pytest.raises(ValueError, match="lie in"):
        t.head(1001)
    with pytest.raises(ValueError, match="weight"):
        two_class_trials(a, b, weight=1.5)
    with pytest.raises(ValueError, match="neither class 0 nor class 1"):
        two_class_from_responses(t, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="at most one response per trial"):
        two_class_from_responses(t.head(2), torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match="integer"):
        two_class_from_responses(t, torch.tensor([0.0, 1.0]))


def test_combined_zmap_is_welch_z_of_the_average_of_the_two_rows():
    a, b = _bars()
    t = two_class_trials(a, b, weight=0.1, n_samples=3000, seed=2)
    said = _person(t.stimuli, a, b)
    r = two_class_from_responses(t, said)
    z = r.combined_zmap("noise")
    # by hand, per pixel: the four cells' noise fields
    x = t.noise.flatten(1).double()
    diff, var = [], []
    for true in (0, 1):
        ga, gb = x[(t.true == true) & (said == 0)], x[(t.true == true) & (said == 1)]
        diff.append(ga.mean(0) - gb.mean(0))
        var.append(ga.var(0) / len(ga) + gb.var(0) / len(gb))
    want = (diff[0] + diff[1]) / (var[0] + var[1]).sqrt()
    assert torch.allclose(z.flatten(), want, atol=1e-9)
    assert torch.allclose(r.combined("noise").flatten(), (diff[0] + diff[1]) / 2, atol=1e-12)
    never_wrong = two_class_from_responses(t, t.true)                # an empty cell: undefined, not 0
    assert bool(never_wrong.combined_zmap("noise").isnan().all())


def test_reliability_is_high_for_a_consistent_observer_and_near_zero_for_a_random_one():
    a, b = _bars()
    t = two_class_trials(a, b, weight=0.15, n_samples=4000, seed=3)
    steady = two_class_reliability(t, _person(t.stimuli, a, b, internal=0.5))
    coin = (stimulus_normal(t.stimuli) > 0).long()             # answers unrelated to the pixels
    assert steady > 0.8
    assert abs(two_class_reliability(t, coin)) < 0.3
    # an observer that never errs leaves a cell empty: the CI, so its reliability, is undefined (not 0)
    perfect = t.true.clone()
    assert math.isnan(two_class_reliability(t, perfect))


# ---------------------------------------------------------------------------------------------- the task
def _task(tmp_path, **kw) -> ObserverTask:
    a, b = _bars()
    args = dict(classes=(5, 6), class_names=("five", "six"), weight=0.15, n_trials=120, block_size=50, seed=7,
                path=tmp_path / "answers.csv", network=_net(a, b, (5, 6), 10))
    args.update(kw)
    return ObserverTask(a, b, **args)


def _answer_all(task: ObserverTask, upto: int) -> list[int]:
    a, b = _bars()
    choices = _person(task.trials.stimuli, a, b).tolist()
    ends = []
    for i in range(task.next_trial, upto):
        if task.answer(i, choices[i], 0.25 + i / 1000):
            ends.append(i + 1)
    return ends


def test_answers_are_saved_as_they_come_and_a_new_session_resumes(tmp_path):
    task = _task(tmp_path)
    assert not (tmp_path / "answers.csv").exists()              # nothing on disk before the first answer
    assert _answer_all(task, 60) == [50]                        # a block ends at 50
    rows = list(csv.DictReader(open(tmp_path / "answers.csv")))
    assert list(rows[0]) == list(ANSWER_COLUMNS) and len(rows) == 60
    assert [int(r["true"]) for r in rows] == [(5, 6)[int(c)] for c in task.trials.true[:60]]
    again = _task(tmp_path)                                     # the notebook was closed: a new task, same path
    assert again.next_trial == 60 and again.responses == task.responses
    assert _answer_all(again, 120) == [100, 120]                # the run's end ends the last block
    assert again.done
    said, rt = read_responses(tmp_path / "answers.csv", 120)
    assert said.tolist() == again.responses and rt is not None and float(rt[3]) == pytest.approx(0.253)
    with pytest.raises(ValueError, match="all 120 trials are answered"):
        again.answer(120, 0)


def test_a_row_cut_short_is_asked_again_and_bad_files_are_refused(tmp_path):
    task = _task(tmp_path)
    _answer_all(task, 10)
    path = tmp_path / "answers.csv"
    path.write_text(path.read_text() + "10,5,0.3")             # a crash in the middle of a row
    again = _task(tmp_path)
    assert again.next_trial == 10 and path.read_text().endswith("\n")
    with pytest.raises(ValueError, match="settings that differ: design"):
        _task(tmp_path, weight=0.2)
    with pytest.raises(ValueError, match="settings that differ: block_size"):
        _task(tmp_path, block_size=10)
    other = tmp_path / "other.csv"
    other.write_text("trial,response\n0,5\n")
    with pytest.raises(ValueError, match="not an answers file"):
        _task(tmp_path, path=other)
    path.write_text(path.read_text().replace("\n3,", "\n4,", 1))  # rows out of order
    with pytest.raises(ValueError, match="trial 4 where trial 3 was expected"):
        _task(tmp_path)


def test_answer_errors_and_memory_only_tasks(tmp_path):
    task = _task(tmp_path, path=None)
    with pytest.raises(ValueError, match="trial 3 is not the next one: trial 0"):
        task.answer(3, 0)
    with pytest.raises(ValueError, match="choice must be 0 \\(five\\) or 1 \\(six\\)"):
        task.answer(0, 2)
    with pytest.raises(ValueError, match="no trial is answered yet"):
        task.summary()
    with pytest.raises(ValueError, match="does not exist"):
        task.stimulus(120)
    task.answer(0, 1)
    assert task.responses == [6] and not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="block_size"):
        _task(tmp_path, block_size=0)
    with pytest.raises(ValueError, match="class_names"):
        _task(tmp_path, class_names=("x", "x"))


def test_summary_is_the_observer_and_the_network_on_the_same_trials(tmp_path):
    a, b = _bars()
    net = _net(a, b, (5, 6), 10)
    net.train()
    task = _task(tmp_path, network=net)
    assert net.training and all(p.grad is None for p in net.parameters())   # the network's state is left as found
    _answer_all(task, 100)
    s = task.summary()
    said = torch.tensor(task.responses)
    sub = task.trials.head(100)
    assert torch.equal(s.observer.sums, two_class_from_responses(sub, said).sums)
    with torch.no_grad():
        lg = net.eval()(sub.stimuli)
    net_said = torch.where(lg[:, 6] > lg[:, 5], 6, 5)
    assert torch.equal(s.network.counts, two_class_from_responses(sub, net_said).counts)
    assert s.agreement == pytest.approx(float((net_said == said).double().mean()))
    assert s.accuracy == pytest.approx(float((said == torch.where(sub.true == 0, 5, 6)).double().mean()))
    assert s.network_accuracy == pytest.approx(float((net_said == torch.where(sub.true == 0, 5, 6)).double().mean()))
    assert s.reliability == pytest.approx(two_class_reliability(sub, said))
    assert s.significant == int(s.observer.significant(0.05, "noise").any(0).sum())


# ---------------------------------------------------------------------------------------------- the widget
def test_widget_records_answers_shows_the_next_trial_and_a_summary_per_block(tmp_path):
    task = _task(tmp_path, n_trials=60, block_size=30)
    w = ObserverWidget(task, scale=4)
    assert w.trial == 0 and w.n_trials == 60 and w.labels == ["five", "six"] and w.image.startswith("data:image/png")
    assert w.prompt == "five or six?" and w.size == 32 and w.summary == ""
    a, b = _bars()
    choices = _person(task.trials.stimuli, a, b).tolist()
    for i in range(30):
        w._on_msg(w, {"type": "answer", "trial": i, "choice": choices[i], "rt": 0.4}, [])
    assert w.trial == 30 and w.error == "" and 'data-answered="30"' in w.summary
    w._on_msg(w, {"type": "answer", "trial": 5, "choice": 0, "rt": 0.4}, [])          # a stale answer
    assert "trial 5 is not the next one" in w.error and w.trial == 30 and task.next_trial == 30
    w._on_msg(w, {"type": "answer", "trial": 30, "choice": 0}, [])
    assert w.error == "" and math.isnan(task.rts[30])
    # a new widget on the same file shows where the reader stopped, with the last summary
    w2 = ObserverWidget(_task(tmp_path, n_trials=60, block_size=30))
    assert w2.trial == 31 and 'data-answered="31"' in w2.summary
    with pytest.raises(ValueError, match="scale"):
        ObserverWidget(task, scale=0)


def test_summary_html_carries_the_numbers_it_draws(tmp_path):
    task = _task(tmp_path)
    _answer_all(task, 100)
    s = task.summary()
    page = summary_html(s, task.class_names)
    import html as _html
    import re
    attr = lambda name: _html.unescape(re.search(f'data-{name}="([^"]*)"', page).group(1))   # noqa: E731
    ci = torch.tensor([math.nan if v is None else v for v in json.loads(attr("observer-ci"))], dtype=torch.float64)
    assert torch.allclose(ci, s.observer.combined("noise").flatten(), atol=1e-6, equal_nan=True)
    assert float(attr("agreement")) == pytest.approx(s.agreement, abs=1e-6) and attr("answered") == "100"
    assert "you and the network gave the same answer on" in page


def test_atomic_write_bytes_replaces_whole_files(tmp_path):
    p = tmp_path / "sub" / "f.txt"
    atomic_write_bytes(p, b"one")
    atomic_write_bytes(p, b"two")
    assert p.read_bytes() == b"two" and [q.name for q in p.parent.iterdir()] == ["f.txt"]


def test_live_task_text_names_the_task_and_where_the_answers_go(tmp_path):
    from wna_helpers.book.reports import observer as rep

    task = _task(tmp_path, n_trials=60)
    text = rep.live_task_text(task, "mnist")
    assert '60 trials of "five or six?" on MNIST' in text and "w = 0.15" in text and "every 50 trials" in text
    assert "(0 of 60 there so far)" in text and "answers.csv" in text
    _answer_all(task, 3)
    assert "(3 of 60 there so far)" in rep.live_task_text(task, "mnist")
    assert "in memory only" in rep.live_task_text(_task(tmp_path, path=None), "mnist")


@pytest.mark.parametrize("module", ["wna_helpers.methods.two_class_trials", "wna_helpers.applications.observer_task",
                                    "wna_helpers.book.observer_widget"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    failures, tried = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)[:2]
    assert tried > 0 and failures == 0
