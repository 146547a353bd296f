"""A two-alternative task for a person, one trial at a time, with every answer saved as it comes.

:class:`ObserverTask` holds the trials of a two-class run (:func:`~wna_helpers.methods.two_class_trials.two_class_trials`:
the same trials a network run with that seed sees), takes the observer's answers one by one, appends each to a CSV
file at once (flushed to disk, so a closed notebook or a crash loses nothing; the same path resumes where the
answers stop), and after every block summarises the observer next to a network on exactly the same trials: both
classification images, the observer's z-map, Holm map and split-half reliability, and how often the two agreed.
It has no user interface of its own; :class:`~wna_helpers.book.observer_widget.ObserverWidget` is one for
JupyterLab, and any other front end (a lab's own presentation software) can drive it the same way.

The CSV has the columns ``trial``, ``response`` (the class index), ``rt`` (seconds) and ``true`` (the true class
index), one row per answered trial in trial order, so :func:`~wna_helpers.methods.trials.read_responses` reads a
finished run; a JSON file beside it (same name, ``.json``) holds the settings, and resuming with other settings is
an error.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..engine.atomic import atomic_write_bytes
from ..engine.kernel import model_device
from ..engine.stimuli import Stimulus
from ..methods.two_class import TwoClassCI
from ..methods.two_class_trials import (TwoClassTrials, two_class_from_responses, two_class_reliability,
                                        two_class_trials)

__all__ = ["ObserverTask", "BlockSummary", "ANSWER_COLUMNS"]

#: The columns of the answers file.
ANSWER_COLUMNS = ("trial", "response", "rt", "true")


@dataclass(frozen=True)
class BlockSummary:
    """The observer so far, next to the network on the same trials.

    Attributes:
        answered: trials answered.
        observer: the observer's :class:`~wna_helpers.methods.two_class.TwoClassCI`.
        network: the network's on the same trials, or None without a network.
        accuracy: the observer's share of correct answers.
        network_accuracy: the network's (NaN without one).
        agreement: share of trials on which observer and network gave the same answer (NaN without a network).
        reliability: split-half reliability of the observer's combined noise CI (NaN while undefined).
        significant: the observer's pixels significant in either true-class noise map (Holm at ``alpha`` per map).
        alpha: the family-wise error rate of ``significant``.
    """

    answered: int
    observer: TwoClassCI
    network: TwoClassCI | None
    accuracy: float
    network_accuracy: float
    agreement: float
    reliability: float
    significant: int
    alpha: float


class ObserverTask:
    """The trials of a two-alternative task, the answers given so far, and their file.

    Args:
        images_a, images_b: ``(M, C, H, W)`` base images of class A and of class B, in [0, 1].
        classes: ``(a, b)`` class indices; default ``(0, 1)``.
        class_names: the names shown for A and B; default ``("A", "B")``.
        weight: signal weight of ``(1 - w) * noise + w * image``; default 0.15.
        n_trials: trials in all; default 400.
        block_size: trials per block (a summary after each); default 50.
        noise: a noise kind; default ``"uniform"``.
        seed: the trials' seed; default 0.
        path: the answers CSV; default None (answers kept in memory only). An existing file resumes the run: its
            answers are read back and the next trial is the first unanswered one.
        network: a classifier answering the same trials (the larger of its logits ``a`` and ``b``); default None.
        alpha: family-wise error rate of the summary's significant pixels; default 0.05.

    Raises:
        ValueError: bad settings (as :func:`~wna_helpers.methods.two_class_trials.two_class_trials`, plus
            ``block_size`` and names), or an answers file that belongs to other settings or is not one of ours.

    Example:
        >>> a, b = torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4)
        >>> task = ObserverTask(a, b, weight=0.5, n_trials=4, block_size=2)
        >>> task.answer(0, 0 if float(task.stimulus(0).mean()) < 0.5 else 1)
        False
        >>> task.next_trial
        1
    """

    def __init__(self, images_a: torch.Tensor, images_b: torch.Tensor, *, classes: tuple[int, int] = (0, 1),
                 class_names: Sequence[str] = ("A", "B"), weight: float = 0.15, n_trials: int = 400,
                 block_size: int = 50, noise: Stimulus | str = "uniform", seed: int = 0,
                 path: str | os.PathLike | None = None, network: nn.Module | None = None, alpha: float = 0.05) -> None:
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
        names = tuple(str(c) for c in class_names)
        if len(names) != 2 or names[0] == names[1]:
            raise ValueError(f"class_names must be two different names (A, B), got {class_names!r}")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
        self.trials: TwoClassTrials = two_class_trials(images_a, images_b, classes=classes, weight=weight,
                                                       n_samples=n_trials, noise=noise, seed=seed)
        self.class_names, self.block_size, self.alpha = names, block_size, float(alpha)
        self.path = Path(path) if path is not None else None
        self.settings: dict[str, Any] = {"design": self.trials.stimulus, "n_trials": len(self.trials),
                                         "class_names": list(names), "block_size": block_size,
                                         "columns": list(ANSWER_COLUMNS)}
        self.responses: list[int] = []
        self.rts: list[float] = []
        self.network_responses = self._network_answers(network) if network is not None else None
        if self.path is not None:
            self._resume()

    # ------------------------------------------------------------------ state
    @property
    def n_trials(self) -> int:
        """Trials in all."""
        return len(self.trials)

    @property
    def next_trial(self) -> int:
        """The index of the next trial to answer (``n_trials`` when done)."""
        return len(self.responses)

    @property
    def done(self) -> bool:
        """Whether every trial is answered."""
        return self.next_trial >= self.n_trials

    def stimulus(self, i: int) -> torch.Tensor:
        """Trial ``i`` as shown: float32 ``(C, H, W)`` in [0, 1] (clamped; uniform noise mixed with an image in
        [0, 1] already lies there)."""
        if not 0 <= i < self.n_trials:
            raise ValueError(f"trial {i} does not exist; the task has trials 0 to {self.n_trials - 1}")
        return self.trials.stimuli[i].clamp(0, 1)

    # ------------------------------------------------------------------ answers
    def answer(self, trial: int, choice: int, rt: float = math.nan) -> bool:
        """Record the answer to ``trial`` (it must be :attr:`next_trial`) and append it to the file at once.

        Args:
            trial: the trial answered.
            choice: 0 for A (``classes[0]``), 1 for B.
            rt: the response time in seconds; default NaN (not measured).

        Returns:
            True when this answer ends a block (or the run).

        Raises:
            ValueError: a trial that is not the next one (answered already, or skipped), a finished run, or a
                choice other than 0 / 1.
        """
        if self.done:
            raise ValueError(f"all {self.n_trials} trials are answered")
        if trial != self.next_trial:
            raise ValueError(f"trial {trial} is not the next one: trial {self.next_trial} is waiting for its answer")
        if choice not in (0, 1) or isinstance(choice, bool):
            raise ValueError(f"choice must be 0 ({self.class_names[0]}) or 1 ({self.class_names[1]}), got {choice!r}")
        response = self.trials.classes[choice]
        rt = float(rt)
        if self.path is not None:
            self._append(trial, response, rt)
        self.responses.append(response)
        self.rts.append(rt)
        return self.next_trial % self.block_size == 0 or self.done

    def _row(self, trial: int, response: int, rt: float) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(
            [trial, response, "" if math.isnan(rt) else f"{rt:.4f}", self.trials.classes[int(self.trials.true[trial])]])
        return buf.getvalue()

    def _append(self, trial: int, response: int, rt: float) -> None:
        assert self.path is not None
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self._meta_path(), json.dumps(self.settings, indent=1, sort_keys=True).encode())
            atomic_write_bytes(self.path, (",".join(ANSWER_COLUMNS) + "\n").encode())
        with open(self.path, "a", newline="") as f:
            f.write(self._row(trial, response, rt))
            f.flush()
            os.fsync(f.fileno())

    def _meta_path(self) -> Path:
        assert self.path is not None
        return self.path.with_suffix(".json")

    def _resume(self) -> None:
        """Read back the answers of an earlier session from :attr:`path` (a last line cut short by a crash is
        dropped)."""
        assert self.path is not None
        if not self.path.exists():
            return
        meta = self._meta_path()
        if not meta.exists():
            raise ValueError(f"{self.path} exists but {meta.name} does not: not an answers file of an ObserverTask; "
                             f"choose a new path")
        saved, current = json.loads(meta.read_text()), json.loads(json.dumps(self.settings))
        diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        if diff:
            raise ValueError(f"{self.path} holds answers to other trials (settings that differ: {', '.join(diff)}); "
                             f"use the same settings to resume, or a new path")
        text = self.path.read_text()
        if text and not text.endswith("\n"):
            text = text[:text.rfind("\n") + 1]           # a row cut short: that trial is asked again
            atomic_write_bytes(self.path, text.encode())
        rows = list(csv.DictReader(io.StringIO(text)))
        for i, r in enumerate(rows):
            if int(r["trial"]) != i:
                raise ValueError(f"{self.path}, row {i + 2}: trial {r['trial']} where trial {i} was expected "
                                 f"(answers are saved in trial order)")
            response = int(r["response"])
            if response not in self.trials.classes:
                raise ValueError(f"{self.path}, row {i + 2}: response {response} is neither class of "
                                 f"{self.trials.classes}")
            self.responses.append(response)
            self.rts.append(float(r["rt"]) if r["rt"] else math.nan)
        if len(self.responses) > self.n_trials:
            raise ValueError(f"{self.path} holds {len(self.responses)} answers for {self.n_trials} trials")

    # ------------------------------------------------------------------ the network and the summary
    @torch.no_grad()
    def _network_answers(self, network: nn.Module) -> torch.Tensor:
        flags = {m: m.training for m in network.modules()}
        network.eval()
        try:
            dev = model_device(network)
            a, b = self.trials.classes
            out = []
            for lo in range(0, self.n_trials, 1024):
                lg = network(self.trials.stimuli[lo:lo + 1024].to(dev)).float().cpu()
                out.append(torch.where(lg[:, b] > lg[:, a], b, a))   # ties go to A, as two_class_ci
            return torch.cat(out)
        finally:
            for m, f in flags.items():
                m.training = f

    def summary(self) -> BlockSummary:
        """The observer's answers so far, next to the network's on the same trials.

        Raises:
            ValueError: nothing answered yet.
        """
        n = self.next_trial
        if n == 0:
            raise ValueError("no trial is answered yet")
        resp = torch.tensor(self.responses, dtype=torch.long)
        sub = self.trials.head(n)
        obs = two_class_from_responses(sub, resp)
        net, net_acc, agree = None, math.nan, math.nan
        if self.network_responses is not None:
            nr = self.network_responses[:n]
            net = two_class_from_responses(sub, nr)
            net_acc, agree = net.accuracy, float((nr == resp).double().mean())
        sig = int(obs.significant(self.alpha, "noise").any(0).sum())
        return BlockSummary(answered=n, observer=obs, network=net, accuracy=obs.accuracy, network_accuracy=net_acc,
                            agreement=agree, reliability=two_class_reliability(sub, resp), significant=sig,
                            alpha=self.alpha)
