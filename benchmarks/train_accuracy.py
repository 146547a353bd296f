"""Train (or load from the cache) every model on both datasets and report test accuracy.

Usage: ``WNA_PROFILE=full python benchmarks/train_accuracy.py [--out FILE]``

Prints a table of test accuracy and training time per (architecture, dataset) and
checks them against the targets of the full profile. Exit status 1 if a target is
missed in the full profile.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import wna_helpers as w

from wna_helpers.config import ACCURACY_TARGETS as TARGETS


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--profile", default=None, help="quick or full (default $WNA_PROFILE, else full)")
    ap.add_argument("--out", default="benchmarks/results/train_accuracy.json")
    args = ap.parse_args()
    prof = w.get_profile(args.profile)
    rows, missed = [], []
    for ds in w.dataset_names():
        for arch in w.model_names():
            t0 = time.perf_counter()
            _, meta = w.get_trained_model(arch, ds, prof)
            row = {"arch": arch, "dataset": ds, "profile": prof.name, "epochs": meta["epochs"],
                   "test_accuracy": meta["test_accuracy"], "train_seconds": meta["train_seconds"],
                   "call_seconds": time.perf_counter() - t0, "device": meta.get("device")}
            target = TARGETS.get((ds, arch))
            row["target"] = target
            rows.append(row)
            flag = "" if target is None or meta["test_accuracy"] >= target else "  MISSED"
            if flag:
                missed.append(row)
            print(f"{ds:14s} {arch:14s} epochs={meta['epochs']:2d} acc={100 * meta['test_accuracy']:6.2f}% "
                  f"train={meta['train_seconds']:7.1f}s target={'-' if target is None else f'{100 * target:.0f}%'}{flag}",
                  flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))
    print(f"total training time {sum(r['train_seconds'] for r in rows) / 60:.1f} min; wrote {out}")
    return 1 if (missed and prof.name == "full") else 0


if __name__ == "__main__":
    raise SystemExit(main())
