"""fastridge: ridge regression with cross-validated alphas for very many targets.

One factorisation of X's Gram or covariance matrix serves every target and every
cross-validation scheme; targets are streamed in chunks on CPU or CUDA (torch).

The public names are imported on first use (PEP 562), so that `import fastridge`
stays light: the command line imports torch inside its own Ctrl-C handling
(`fastridge.__main__.run`), where a Ctrl-C while torch loaded had printed a traceback.
"""

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "FastRidgeCV": ".estimator",
    "PrecisionWarning": "._cv",
    "RidgeCVResult": ".solve",
    "load": "._model",
    "ridge_cv": ".solve",
}

__all__ = ["FastRidgeCV", "PrecisionWarning", "RidgeCVResult", "load", "ridge_cv", "__version__"]


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
        globals()[name] = value  # (found directly from now on)
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
