"""Markdown tables and generated prose of the book's chapters (no matplotlib).

:func:`markdown_table` turns a list of dicts into a Markdown table (pandas is not a dependency);
the other functions build the tables and paragraphs that the chapters show with
``IPython.display.Markdown``: the results overview (:func:`overview_markdown`), the paragraph on
each model's noise bias (:func:`describe_biases`) and the profiles' settings (:func:`profile_table`).
:func:`dataset_label` is how the book writes a dataset's name, in tables and figure titles alike.
"""
from __future__ import annotations

import math
from dataclasses import asdict
from typing import Mapping, Sequence

from ..zoo.data import class_names

__all__ = ["DATASET_LABELS", "OVERVIEW_PARTS", "P_VALUE", "dataset_label", "markdown_table", "overview_markdown",
           "p_text", "describe_biases", "profile_table"]

#: How the book writes each dataset's name.
DATASET_LABELS: dict[str, str] = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}

#: Columns of :func:`overview_markdown`: key of an overview row -> header.
_OVERVIEW_COLUMNS: dict[str, str] = {
    "model": "model", "dataset": "dataset", "test_accuracy": "test acc.",
    "noise_entropy_bits": "noise entropy (bits)", "top_noise": "noise mostly called",
    "ci_template_accuracy": "CI-template acc.", "mean_template_accuracy": "mean-template acc.",
    "feedback_diagonal": "CIs fed back: own class", "sta_filter_r": "conv1 STA-filter r", "n_noise": "n noise"}

#: The results overview as narrower tables, ``overview_markdown(rows, part)``: each part's columns (keys of
#: the overview rows; every column of the full table is in one part, model and dataset in both), so that a
#: table fits the text column of the book's pages. ``"noise"``: the models and where the noise goes;
#: ``"cis"``: what their classification images (as templates, fed back) and first-layer STAs are worth.
OVERVIEW_PARTS: dict[str, tuple[str, ...]] = {
    "noise": ("model", "dataset", "test_accuracy", "n_noise", "noise_entropy_bits", "top_noise"),
    "cis": ("model", "dataset", "ci_template_accuracy", "mean_template_accuracy", "feedback_diagonal",
            "sta_filter_r"),
}


def dataset_label(dataset: str) -> str:
    """Display name of a dataset.

    Args:
        dataset: dataset name (``"mnist"``, ``"fashion_mnist"``, ...).

    Returns:
        Its display name (``"fashion_mnist"`` -> ``"Fashion-MNIST"``); unknown names pass through.
    """
    return DATASET_LABELS.get(dataset, dataset)


#: The format spec of :func:`markdown_table` for a p-value column (:func:`p_text`).
P_VALUE = "p"


def p_text(p: float) -> str:
    """A p-value to three decimals, "< 0.001" when it would print as 0.000, "–" when undefined (NaN)."""
    if p != p:
        return "–"
    return "< 0.001" if p < 0.0005 else f"{p:.3f}"


def markdown_table(rows: Sequence[Mapping[str, object]], columns: Mapping[str, str] | None = None,
                   formats: Mapping[str, str] | None = None, *, right: Sequence[str] = ()) -> str:
    """A Markdown table from a list of dicts (pandas is not a dependency).

    Args:
        rows: one dict per row.
        columns: key -> header, in order; default None: every key of the first row, as is.
        formats: key -> format spec (e.g. ``".3f"``, ``".1%"``, or :data:`P_VALUE` for a p-value: three decimals,
            "< 0.001" below that); default None: ``str``. NaN and None print as "–".
        right: keys of the columns aligned right; default none.

    Returns:
        The table as a Markdown string (for ``IPython.display.Markdown``).
    """
    cols = dict(columns) if columns is not None else {k: k for k in (rows[0] if rows else {})}
    fmts = formats or {}

    def cell(key: str, v: object) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "–"
        spec = fmts.get(key)
        text = p_text(float(v)) if spec == P_VALUE else format(v, spec) if spec else str(v)
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(cols.values()) + " |", "|" + "".join("---:|" if k in right else "---|" for k in cols)]
    lines += ["| " + " | ".join(cell(k, r.get(k)) for k in cols) + " |" for r in rows]
    return "\n".join(lines)


def overview_markdown(rows: Sequence[Mapping[str, object]], part: str | None = None) -> str:
    """The results overview as a Markdown table, with dataset display names and the top noise class by name.

    Args:
        rows: rows of :func:`~wna_helpers.book.overview.overview_row`; where a row has ``cis`` (the number of
            classes that have a CI, from :func:`~wna_helpers.book.overview.overview_rows`), its fed-back column
            reads "diagonal / CIs".
        part: a key of :data:`OVERVIEW_PARTS` for one of the narrower tables (``"noise"``, ``"cis"``);
            default None: every column in one table (ten columns, wider than a book page).

    Returns:
        The table (model, dataset, accuracies, noise bias, CI feedback, STA-filter r, n) as a Markdown string.

    Raises:
        ValueError: an unknown ``part`` (the message lists the parts).
    """
    if part is not None and part not in OVERVIEW_PARTS:
        raise ValueError(f"unknown overview part {part!r}; the parts are {list(OVERVIEW_PARTS)}")
    out = []
    for r in rows:
        d = dict(r)
        ds = str(d["dataset"])
        d["top_noise"] = f"{class_names(ds)[int(d['top_noise_class'])]} ({float(d['top_noise_share']):.0%})"
        d["dataset"] = dataset_label(ds)
        if d.get("cis") is not None:
            d["feedback_diagonal"] = f"{int(d['feedback_diagonal'])} / {int(d['cis'])}"  # type: ignore[call-overload]
        out.append(d)
    columns = _OVERVIEW_COLUMNS if part is None else {k: _OVERVIEW_COLUMNS[k] for k in OVERVIEW_PARTS[part]}
    return markdown_table(out, columns, {
        "test_accuracy": ".1%", "noise_entropy_bits": ".2f", "ci_template_accuracy": ".1%",
        "mean_template_accuracy": ".1%", "sta_filter_r": ".3f", "n_noise": ","})


def describe_biases(rows: Sequence[Mapping[str, object]], chance: float = 0.1, *, dominant_share: float = 0.9,
                    biased_share: float = 0.4, well_above: float = 2.0, above: float = 1.2) -> str:
    """A paragraph per dataset saying, from the overview rows, where each model sends pure noise and
    what its classification images are worth (Markdown).

    Args:
        rows: rows of :func:`~wna_helpers.book.overview.overview_row` (with ``cis``, the number of classes that have
            a CI, when known: :func:`~wna_helpers.book.overview.overview_rows` adds it).
        chance: accuracy of guessing; default 0.1.
        dominant_share: a model whose top noise class gets at least this share "sends almost all noise"
            there; default 0.9.
        biased_share: a model whose top noise class gets at least this share (and less than
            ``dominant_share``) "is biased toward" it, and counts as strongly biased in the lead
            sentence; below it the model "spreads noise over the classes"; default 0.4.
        well_above: CI-template accuracy of at least ``well_above * chance`` is "well above" chance;
            default 2.0.
        above: CI-template accuracy over ``above * chance`` (and below ``well_above * chance``) is
            "above" chance, anything lower "near" chance; default 1.2.

    Returns:
        The paragraphs, separated by blank lines.
    """
    by_ds: dict[str, list[Mapping[str, object]]] = {}
    for r in rows:
        by_ds.setdefault(str(r["dataset"]), []).append(r)
    paras = []
    for ds, rs in by_ds.items():
        names = class_names(ds)
        k = len(names)
        parts = []
        for r in rs:
            share, h = float(r["top_noise_share"]), float(r["noise_entropy_bits"])  # type: ignore[arg-type]
            top = names[int(r["top_noise_class"])]  # type: ignore[call-overload]
            if share >= dominant_share:
                kind = f"sends almost all noise ({share:.0%}) to **{top}**"
            elif share >= biased_share:
                kind = f"is biased toward **{top}** ({share:.0%} of the noise, entropy {h:.2f} bits)"
            else:
                kind = f"spreads noise over the classes (largest share {top}, {share:.0%}; entropy {h:.2f} bits)"
            acc = float(r["ci_template_accuracy"])  # type: ignore[arg-type]
            verdict = "well above" if acc >= well_above * chance else ("above" if acc > chance * above else "near")
            n_ci = int(r.get("cis", k))  # type: ignore[call-overload]
            back = (f"its only CI is given back its own class" if n_ci == 1 and int(r["feedback_diagonal"]) == 1  # type: ignore[call-overload]
                    else f"{int(r['feedback_diagonal'])} of its {n_ci} CIs are given back their own class")  # type: ignore[call-overload]
            parts.append(f"`{r['model']}` {kind}; its CIs as templates reach {acc:.1%} on the test set "
                         f"({verdict} chance, {chance:.0%}), and {back}")
        biased = [str(r["model"]) for r in rs if float(r["top_noise_share"]) >= biased_share]  # type: ignore[arg-type]
        lead = (f"On **{dataset_label(ds)}**, {len(biased)} of {len(rs)} models are strongly biased "
                f"({biased_share * 100:g} % or more of the noise in one class)"
                + (f": {', '.join(biased)}." if biased else "."))
        paras.append(lead + " " + "; ".join(parts) + ".")
    return "\n\n".join(paras)


def profile_table(profiles: Mapping[str, object]) -> str:
    """Markdown table of the profiles' costly settings (one column per profile).

    Args:
        profiles: profile name -> :class:`~wna_helpers.config.Profile` (e.g. ``wna.PROFILES``).

    Returns:
        The table: one row per setting, integers with thousands separators, "–" for an empty value.
    """
    dicts = {name: asdict(p) for name, p in profiles.items()}  # type: ignore[call-overload]
    keys = list(next(iter(dicts.values())))
    rows = []
    for k in keys:
        row = {"setting": f"`{k}`"}
        for name, d in dicts.items():
            v = d[k]
            row[name] = ", ".join(f"{a}: {b:,}" if isinstance(b, int) else f"{a}: {b}" for a, b in v.items()) \
                if isinstance(v, dict) else (f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v))
            row[name] = row[name] or "–"
        rows.append(row)
    return markdown_table(rows, {"setting": "setting", **{n: n for n in dicts}})
