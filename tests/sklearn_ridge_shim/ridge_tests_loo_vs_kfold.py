"""scikit-learn's test_ridge.py with RidgeCV = FastRidgeCV whose K-fold cv goes to
scikit-learn's RidgeCV: leave-one-out of fastridge against scikit-learn's K-fold
(see _ridge_shim_build.py)."""

from _ridge_shim_build import build_into, delegating_class

build_into(globals(), delegating_class())
