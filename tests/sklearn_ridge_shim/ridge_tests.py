"""scikit-learn's test_ridge.py with RidgeCV = FastRidgeCV (see _ridge_shim_build.py)."""

from _ridge_shim_build import build_into

from fastridge import FastRidgeCV

build_into(globals(), FastRidgeCV)
