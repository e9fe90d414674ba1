"""Names and default values of the user-visible options, importable without NumPy.

The command line builds its help from these, so `excnet --help` imports nothing heavy; the
modules that use them (pipeline, curve, tone, temporal) import them from here.
"""

#: Ways to estimate phi: the CNN trained at test time, or the exact minimiser it settles at.
SOLVERS = ("excnet", "direct")
DEFAULT_SOLVER = "direct"
#: Network widths of `--solver excnet` (`network.ARCHITECTURES`).
ARCHS = ("small", "reference")

#: The reference restores with only this fraction of the estimated phi_h (it trains with all).
FAITHFUL_HIGHLIGHT_SCALE = 0.2
#: Highlight scale of the default (improved) rendering, `tone.IMPROVED`.
IMPROVED_HIGHLIGHT_SCALE = 0.5

#: Video: time constant (s) of the phi smoothing, scene-cut threshold, estimate every k-th frame.
DEFAULT_TAU = 0.5
DEFAULT_CUT_THRESHOLD = 0.03
DEFAULT_EVERY = 3

#: Clean lifting (`denoise.lift`): off, auto (by the gain and the estimated noise), strong.
DENOISE_MODES = ("off", "auto", "strong")
