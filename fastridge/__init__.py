"""fastridge: ridge regression with cross-validated alphas for very many targets.

One factorisation of X's Gram or covariance matrix serves every target and every
cross-validation scheme; targets are streamed in chunks on CPU or CUDA (torch).
"""

from ._cv import PrecisionWarning
from ._model import load
from .estimator import FastRidgeCV
from .solve import RidgeCVResult, ridge_cv

__version__ = "0.1.0"

__all__ = ["FastRidgeCV", "PrecisionWarning", "RidgeCVResult", "load", "ridge_cv", "__version__"]
