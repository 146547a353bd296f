"""Project hygiene: dependencies agree, notebooks are committed clean, the TOC is complete."""
import json
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~ \[]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _specs(reqs) -> dict[str, str]:
    return {_name(r): r.replace(" ", "")[len(_name(r)):] for r in reqs}


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["test"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    conda = [d for d in env if isinstance(d, str) and not d.startswith(("python", "pip"))]
    pip = next(d["pip"] for d in env if isinstance(d, dict))
    assert _specs(deps) == _specs(conda + pip)
    assert _specs(deps)["torch"] == ">=2.14" and _specs(deps)["torchvision"] == ">=0.29"
    assert _specs(deps)["jupyter-book"] == ">=1.0.4,<2"


def test_notebooks_have_no_outputs():
    notebooks = sorted((ROOT / "book").glob("*.ipynb"))
    assert notebooks
    for nb in notebooks:
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] == "code":
                assert not cell["outputs"] and cell["execution_count"] is None, f"{nb.name} has outputs"


def test_toc_lists_every_chapter_and_nothing_missing():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for p in toc["parts"] for c in p["chapters"]]
    for f in files:
        assert any((ROOT / f"{f}{ext}").exists() for ext in (".ipynb", ".md")), f
    listed = {f.split("/")[-1] for f in files}
    on_disk = {p.stem for p in (ROOT / "book").iterdir() if p.suffix in (".ipynb", ".md")}
    assert on_disk == listed


def test_config_fails_on_notebook_errors():
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert cfg["execute"]["execute_notebooks"] == "cache" and cfg["execute"]["timeout"] > 0
    assert cfg["sphinx"]["config"]["nb_execution_raise_on_error"] is True and cfg["only_build_toc_files"]


def test_python_version_promise_is_the_one_the_code_needs():
    """tomllib (used above) is in the standard library from Python 3.11: promise that everywhere."""
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"] == ">=3.11"
    env = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    assert "python>=3.11" in env
    assert "3.10" not in (ROOT / "README.md").read_text()


def test_readme_commands_exist():
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_benchmark_numbers_are_regenerated_from_the_json():
    """README.md's headline table and benchmarks/README.md's latest numbers equal what benchmarks/render.py makes
    from benchmarks/results/*.json: no benchmark number is typed by hand."""
    import subprocess
    import sys
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "render.py"), "--check"], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_readme_is_a_front_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 150
    for heading in ("## Two commands", "## Use the helpers on your own model", "## Where things live",
                    "## Headline figures"):
        assert heading in readme


def _code_lines(path: Path) -> list[str]:
    nb = json.loads(path.read_text())
    return [line for c in nb["cells"] if c["cell_type"] == "code" for line in "".join(c["source"]).splitlines()]


def test_chapters_are_thin_and_fit_the_page():
    """A chapter calls the library and shows sections: at most 100 code lines each, under 600 in all, and no
    code line wider than the rendered page's code column (78 characters at 1280 px)."""
    books = sorted((ROOT / "book").glob("*.ipynb"))
    lines = {p.name: _code_lines(p) for p in books}
    assert all(len(v) <= 100 for v in lines.values()), {k: len(v) for k, v in lines.items()}
    assert sum(len(v) for v in lines.values()) < 600
    wide = [(k, line) for k, v in lines.items() for line in v if len(line) > 78]
    assert not wide, wide[:5]


def test_readme_headline_names_one_run_or_each_runs_date(tmp_path, monkeypatch):
    """The headline says "in one run" only when every row it quotes comes from the same run; otherwise it names the
    date and CPU of each kind's run, and the table carries training and memory beside the engines."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("render_under_test", ROOT / "benchmarks" / "render.py")
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    meta = {"date": "2026-01-01 10:00", "cpu": "CPU A", "cpus": 2, "torch": "2.14", "mem_sizes": [50000, 10**6]}
    kinds = ("ci_engine", "ci_one_process", "sta_engine", "train_wna", "ci_engine_memory")
    rows = [{"kind": k, "arch": "paper_cnn", "samples_per_s": 100.0, "n": 250000} for k in kinds]
    summary = {"paper_cnn": {"ci_engine_over_fastest_forward": 0.9, "ci_over_forward_one_process": 0.95,
                             "sta_over_conv_alone": 0.3, "train_wna_over_plain": 1.7, "memory_growth_mb": 12.0}}
    targets = {"ci_over_fastest_forward": 0.85, "sta_over_conv_alone": 0.4, "memory_growth_mb": 64.0,
               "train_wna_over_plain": 1.5}
    acc = [{"arch": "paper_cnn", "dataset": "mnist", "test_accuracy": 0.99}]

    def write(rows_, meta_):
        (tmp_path / "speed_benchmark.json").write_text(json.dumps(
            {"meta": meta_, "rows": rows_, "summary": summary, "targets": targets}))
        (tmp_path / "train_accuracy.json").write_text(json.dumps(acc))
    monkeypatch.setattr(render, "RESULTS", tmp_path)
    write(rows, meta)
    one = render.headline()
    assert "Measured in one run" in one and "2026-01-01 10:00 on an CPU A" in one
    assert "| `paper_cnn` | 99.00% / – | 100 | 0.900 | 0.95 | 0.30 | – | 1.70 | 12 |" in one
    assert "alternating in one" not in one   # no sta_one_process row: the STA's one-process column is empty
    assert "Targets: CI 0.85, STA 0.4, training 1.5" in one
    # the sizes are the run's own, not typed: CI at its n, memory between the two sizes it was asked for
    assert "CI engine as shipped at 250,000 samples" in one and "memory growth, 50,000 to 10^6 samples (MB)" in one
    assert "one run of 10^6 samples after its first 50,000." in one
    later = dict(rows[2], run="2026-01-02 09:00")
    write([*rows[:2], later, *rows[3:]], {**meta, "updates": [{"date": "2026-01-02 09:00", "cpu": "CPU B"}]})
    two = render.headline()
    assert "in one run" not in two
    assert "the STA's on 2026-01-02 09:00 on an CPU B" in two and "training on 2026-01-01 10:00 on an CPU A" in two
    summary["paper_cnn"]["sta_over_conv_alone_one_process"] = 0.41
    write([*rows, {"kind": "sta_one_process", "arch": "paper_cnn", "samples_per_s": 90.0, "n": 250000}], meta)
    three = render.headline()
    assert "| 0.30 | 0.41 | 1.70 |" in three and "the STA against `conv1` alone, each in its own process and " \
        "alternating in one;" in three
    assert "fed by a plain loop" not in three   # no bare loops measured: no sentence about them
    summary["paper_cnn"].update(ci_bare_over_forward=0.84, ci_over_bare=0.97, sta_bare_over_conv_alone=0.35,
                                sta_over_bare=1.02)
    write([*rows, {"kind": "sta_one_process", "arch": "paper_cnn", "samples_per_s": 90.0, "n": 250000}], meta)
    assert ("each engine's own accumulators fed by a plain loop with no engine (the pace of the work itself) ran at: "
            "the CI's (its sums and permutation statistics) 0.84 x the compiled forward, the engine 0.97 x that loop; "
            "the STA's 0.35 x `conv1` alone, the engine 1.02 x that loop.") in render.headline()
