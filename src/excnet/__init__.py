"""excnet: zero-shot restoration of back-lit photos and videos (ExCNet, ACM MM 2019)."""

from .curve import Curve, s_curve
from .pipeline import Restorer, Result, restore
from .solvers import Estimate, solve_direct

__all__ = ["Curve", "Estimate", "Restorer", "Result", "restore", "s_curve", "solve_direct"]
__version__ = "0.1.0"
