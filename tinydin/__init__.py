"""tinydin: the Deep Interest Network (Zhou et al., KDD 2018) in NumPy.

Every forward and backward pass is written by hand and checked by finite
differences; see README.md for the tour and notebooks/ for the lessons.
"""
__version__ = "0.1.0"
