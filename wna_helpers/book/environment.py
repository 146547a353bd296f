"""The software and hardware a build ran on (the reproducibility appendix)."""
from __future__ import annotations

import os

import torch

from ..config import default_device

__all__ = ["environment_info"]


def environment_info() -> dict[str, str]:
    """Versions of Python and the libraries the book uses, the device and the CPU threads."""
    import importlib.metadata as md
    import platform

    info = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("torch", "torchvision", "numpy", "matplotlib", "ipywidgets", "jupyter-book", "myst-nb",
                "nbmake", "wna-helpers"):
        try:
            info[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            info[pkg] = "not installed"
    dev = default_device()
    info["device"] = str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else "")
    info["cpu threads (torch)"] = str(torch.get_num_threads())
    info["cpus"] = str(os.cpu_count())
    return info
