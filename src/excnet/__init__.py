"""excnet: zero-shot restoration of back-lit photos and videos (ExCNet, ACM MM 2019)."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .curve import Curve, s_curve
    from .pipeline import Restorer, Result, restore
    from .solvers import Estimate, solve_direct

__all__ = ["Curve", "Estimate", "Restorer", "Result", "restore", "s_curve", "solve_direct"]
__version__ = "0.1.0"

# The public names load their modules on first use, so that `excnet --help` (which imports
# this package) pays for neither NumPy nor OpenCV.
_HOME = {"Curve": "curve", "s_curve": "curve", "Restorer": "pipeline", "Result": "pipeline",
         "restore": "pipeline", "Estimate": "solvers", "solve_direct": "solvers"}


def __getattr__(name: str) -> object:
    if name not in _HOME:
        raise AttributeError(f"module 'excnet' has no attribute {name!r}")
    value = getattr(import_module(f".{_HOME[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME])
