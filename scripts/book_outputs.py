"""Extract the tables and computed prose of executed notebooks, to check that a change moved no number.

Usage:
    python scripts/book_outputs.py extract EXECUTED_DIR OUT.json   # every Markdown/text output, by notebook
    python scripts/book_outputs.py compare BEFORE.json AFTER.json [--prose]  # exit 1 if any table differs

Execute the notebooks first, e.g. (quick profile, the results cache of ``make test``)::

    WNA_PROFILE=quick jupyter nbconvert --to notebook --execute --output-dir /tmp/run book/*.ipynb

A table is an output whose lines start with ``|``; everything else is prose. ``compare`` lists the
tables of each notebook that are not found, unchanged, in the other run (order-independent, so
cells may move), and the prose that changed, which is reported but does not fail the check.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

_OBJECT_REPR = re.compile(r"^<[^>]+ at 0x[0-9a-f]+>$|^<Figure size")


def _outputs(nb: dict) -> list[str]:
    found = []
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "application/vnd.jupyter.widget-view+json" in data:  # progress bars, widgets
                continue
            text = data.get("text/markdown")
            if text is None and out.get("output_type") in ("execute_result", "display_data"):
                text = data.get("text/plain")
            if text is None:
                continue
            text = "".join(text) if isinstance(text, list) else text
            if not _OBJECT_REPR.search(text.strip()):
                found.append(text.strip())
    return found


def _split(text: str) -> tuple[list[str], list[str]]:
    """Tables (blocks of lines starting with '|') and the remaining prose lines."""
    tables, prose, block = [], [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            block.append(line)
            continue
        if block:
            tables.append("\n".join(block))
            block = []
        if line.strip():
            prose.append(line.strip())
    return tables, prose


def extract(folder: str, out: str) -> None:
    result = {}
    for path in sorted(Path(folder).glob("*.ipynb")):
        tables, prose = [], []
        for text in _outputs(json.loads(path.read_text())):
            t, p = _split(text)
            tables += t
            prose += p
        result[path.stem] = {"tables": tables, "prose": prose}
    Path(out).write_text(json.dumps(result, indent=1, ensure_ascii=False))
    print(f"{out}: {sum(len(v['tables']) for v in result.values())} tables from {len(result)} notebooks")


def compare(before: str, after: str, verbose: bool = False) -> int:
    a, b = json.loads(Path(before).read_text()), json.loads(Path(after).read_text())
    bad = 0
    for name in sorted(set(a) - set(b)):
        print(f"{name}: not in {after} (not run)")
    for name in sorted(b):
        ta, tb = a.get(name, {}).get("tables", []), b.get(name, {}).get("tables", [])
        missing = [t for t in ta if t not in tb]
        new = [t for t in tb if t not in ta]
        pa, pb = a.get(name, {}).get("prose", []), b.get(name, {}).get("prose", [])
        changed = len([p for p in pa if p not in pb]) + len([p for p in pb if p not in pa])
        print(f"{name}: {len(ta)} tables before, {len(tb)} after; {len(missing)} missing, {len(new)} new; "
              f"{changed} prose lines differ")
        if verbose:
            for p in pa:
                if p not in pb:
                    print("  - prose before: " + p)
            for p in pb:
                if p not in pa:
                    print("  + prose after: " + p)
        for t in missing:
            print("  - missing:\n    " + t.replace("\n", "\n    "))
        for t in new:
            print("  - new:\n    " + t.replace("\n", "\n    "))
        bad += len(missing) + len(new)
    print("identical tables" if not bad else f"{bad} tables differ")
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "extract":
        extract(sys.argv[2], sys.argv[3])
    elif len(sys.argv) in (4, 5) and sys.argv[1] == "compare":
        sys.exit(compare(sys.argv[2], sys.argv[3], verbose=sys.argv[4:] == ["--prose"]))
    else:
        sys.exit(__doc__)
