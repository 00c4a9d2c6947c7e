"""Deterministic benchmark problems: standardized X, structured targets.

Every block of columns is drawn from its own seeded generator (a
`numpy.random.SeedSequence` child per block of `BLOCK` columns), so the same
(n_samples, n_features, n_targets, seed) gives the same arrays bit for bit,
whether they are made whole in memory or chunk by chunk into a memmap.

Design X (n_samples, n_features): a few shared latent factors plus
independent noise (so the Gram spectrum has a few large eigenvalues over a
Marchenko-Pastur bulk, as in real data), then each column standardized
(mean 0, variance 1).

Targets Y (n_samples, n_targets): y_t = X w_t + noise_t with a unit-variance
noise and w_t = B c_t * tau_t, B (n_features, n_latent) shared, c_t standard
normal. tau_t**2 = 1 / alpha_t with alpha_t log-uniform over [LOW, HIGH]: the
Bayes-optimal ridge penalty of a target is noise variance / per-feature weight
variance = alpha_t, so the selected alphas spread over the {1e4, 2e4, 4e4}
grid instead of all landing on one end. Y is computed as G C with
G = X B (n_samples, n_latent) done once, so a chunk costs O(n_samples *
n_latent * chunk), not a GEMM with X.
"""

from __future__ import annotations

import numpy as np

BLOCK = 1024  # columns per seeded block (fixed: chunking must not change the data)
N_FACTORS = 20  # latent factors shared by the columns of X
N_LATENT = 32  # dimension of the target weight subspace
ALPHA_LOW, ALPHA_HIGH = 5e3, 8e4  # range of the per-target optimal alpha

ALPHAS_3 = (1e4, 2e4, 4e4)
ALPHAS_6 = (5e3, 1e4, 2e4, 4e4, 8e4, 1.6e5)

SIZES = {
    "XS": dict(n_samples=300, n_features=1200, n_targets=1500),
    "S": dict(n_samples=1000, n_features=4000, n_targets=8000),
    "M": dict(n_samples=2000, n_features=8000, n_targets=20000),
    "L": dict(n_samples=4000, n_features=20000, n_targets=40000),
    # an encoding model: more samples than features (e.g. 8,000 images' 1,000-d
    # embeddings predicting 20,000 voxels), the covariance form
    "E": dict(n_samples=8000, n_features=1000, n_targets=20000),
    "headline": dict(n_samples=8859, n_features=20000, n_targets=173568),
}


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *key]))


def factors(n_samples: int, seed: int) -> np.ndarray:
    """Shared latent factors of X, shape (n_samples, N_FACTORS), float64."""
    return _rng(seed, 0).standard_normal((n_samples, N_FACTORS))


def x_block(n_samples: int, n_features: int, j: int, seed: int, F=None) -> np.ndarray:
    """Standardized columns [j*BLOCK, min((j+1)*BLOCK, n_features)) of X, float64."""
    if F is None:
        F = factors(n_samples, seed)
    lo, hi = j * BLOCK, min((j + 1) * BLOCK, n_features)
    rng = _rng(seed, 1, j)
    loadings = rng.standard_normal((N_FACTORS, hi - lo)) * 0.7
    block = F @ loadings
    block += rng.standard_normal((n_samples, hi - lo))
    block -= block.mean(axis=0)
    block /= block.std(axis=0)
    return block


def make_X(n_samples: int, n_features: int, seed: int = 0, dtype=np.float32, out=None):
    """X of shape (n_samples, n_features) in `dtype`, into `out` if given (e.g. a memmap)."""
    if out is None:
        out = np.empty((n_samples, n_features), dtype=dtype)
    F = factors(n_samples, seed)
    for j in range(-(-n_features // BLOCK)):
        lo, hi = j * BLOCK, min((j + 1) * BLOCK, n_features)
        out[:, lo:hi] = x_block(n_samples, n_features, j, seed, F)
    return out


def signal_basis(X, seed: int) -> np.ndarray:
    """G = X B / sqrt(n_features), shape (n_samples, N_LATENT), float64.

    B is drawn block by block over the features so X can be a memmap read in
    column blocks (never whole in float64).
    """
    n_samples, n_features = X.shape
    G = np.zeros((n_samples, N_LATENT))
    for j in range(-(-n_features // BLOCK)):
        lo, hi = j * BLOCK, min((j + 1) * BLOCK, n_features)
        B = _rng(seed, 2, j).standard_normal((hi - lo, N_LATENT))
        G += np.asarray(X[:, lo:hi], dtype=np.float64) @ B
    # With w_t = B c_t tau_t, the per-feature weight variance is tau_t**2 (B, c
    # standard normal, entries of w ~ N(0, tau^2 * N_LATENT)); scale c by
    # 1/sqrt(N_LATENT) so it is exactly tau_t**2.
    return G / np.sqrt(N_LATENT)


def y_block(G: np.ndarray, n_targets: int, j: int, seed: int) -> np.ndarray:
    """Targets [j*BLOCK, min((j+1)*BLOCK, n_targets)), shape (n_samples, block), float64."""
    lo, hi = j * BLOCK, min((j + 1) * BLOCK, n_targets)
    rng = _rng(seed, 3, j)
    width = hi - lo
    log_alpha = rng.uniform(np.log(ALPHA_LOW), np.log(ALPHA_HIGH), size=width)
    tau = np.exp(-0.5 * log_alpha)
    C = rng.standard_normal((N_LATENT, width)) * tau
    block = G @ C
    block += rng.standard_normal((G.shape[0], width))
    return block


def make_Y(X, n_targets: int, seed: int = 0, dtype=np.float32, out=None, G=None):
    """Y of shape (n_samples, n_targets) in `dtype`, into `out` if given (e.g. a memmap)."""
    n_samples = X.shape[0]
    if G is None:
        G = signal_basis(X, seed)
    if out is None:
        out = np.empty((n_samples, n_targets), dtype=dtype)
    for j in range(-(-n_targets // BLOCK)):
        lo, hi = j * BLOCK, min((j + 1) * BLOCK, n_targets)
        out[:, lo:hi] = y_block(G, n_targets, j, seed)
    return out


def make_problem(n_samples: int, n_features: int, n_targets: int, seed: int = 0, dtype=np.float32):
    """(X, Y) in `dtype`, generated in float64 and then cast, so the float32 and
    float64 versions of a problem are the same numbers up to rounding."""
    X = make_X(n_samples, n_features, seed, np.float64)
    Y = make_Y(X, n_targets, seed, np.float64)
    return X.astype(dtype, copy=False), Y.astype(dtype, copy=False)
