"""Flop model of fastridge's algorithm (../shared/MATH.md) and its roofline time.

Dual form (n_samples <= n_features), rank r = n_samples - 1 with an intercept:

    Gram        Z Z^T                    2 N^2 P        decompose dtype (float64)
    eigh        N x N                    ~9 m^3         m = min(N, P), float64
    M           Z^T U                    2 N P r        decompose dtype; needed for coef
    project     U^T Y                    2 N r T        compute dtype
    residuals   U diag(.) Ũ, per alpha   2 N r T each   compute dtype (LOO, K-fold)
    K-fold      (I - H_bb)^-1 E_b        2 N (N/K) T    per alpha (n_b^2 T per fold)
    coef        M (Ũ / (eig + alpha*))   2 P r T        compute dtype

Primal form (N > P): the covariance Z^T Z costs 2 N P^2, its eigh 9 P^3, and
U = Z V / s another 2 N P r. Leave-one-out and GCV there also form the
remainder Yc - U Ũ (2 N r T, in the projection). K folds that partition the
samples refit each fold in the shared basis (fastridge._cv.FoldRefits, since
session 20): per fold an eigh of r x r (K more eighs) and per fold and alpha a
maker n_b x r (2 (n_alphas + 3) N r^2 in all, float64); per target the
training rows' projection UtY - U_b^T Yc_b (2 N r T) instead of the remainder,
and per alpha one GEMM a fold (2 N r T in all), with no n_b x n_b blocks.

Leave-one-out with per-target alphas in the dual form (fastridge._cv.DualRoute,
since session 3) has no eigh, no projection and no M:

    Gram        Z Z^T                      N^2 P (syrk)    float64
    factor      rank (pivoted Cholesky)    N^3 / 3         float64
                Cholesky inverse per alpha N^3 each        float64 (potrf + potri)
                (above 8 alphas instead: the eigh, and U diag(.) U^T per alpha,
                N^2 r each in the compute dtype)
    residuals   R_a Yc, per alpha          2 N^2 T each    compute dtype
    coef        Xs^T c                     2 P N T         primal only; dual: none

K folds that partition the samples, per-target alphas, up to 8 alphas
(fastridge._cv.FoldDualRoute, since session 16): the same, plus per alpha the
makers G_a^T = R_a blockdiag(R_bb)^-1, 2 N^3 / K (float64), and the held-out
residuals of each target's alpha turned back into E, 2 N^2 T / K (in the refit).

GCV needs no per-alpha GEMM (O(r T) per alpha, neglected here).

The roofline time divides the GEMM flops by the GEMM rate measured in the
same run (float64 rate for the decomposition, the compute dtype's rate for the
target work) and adds the eigh time measured in the same run. It is the time
the algorithm would take if every GEMM ran at the measured peak and nothing
else cost anything: fraction of roofline = roofline / wall.
"""

from __future__ import annotations

CHOLESKY_MAX_ALPHAS = 8  # as fastridge.solve.CHOLESKY_MAX_ALPHAS


def flop_model(
    n_samples: int,
    n_features: int,
    n_targets: int,
    n_alphas: int,
    cv=None,
    fit_intercept: bool = True,
    solution: str = "primal",
    alpha_per_target: bool = True,
    dual_route: bool | None = None,
) -> dict:
    """Flops of each stage (and the eigh size), as a dict. `dual_route`: None for
    fastridge's choice (leave-one-out, per-target alphas, dual form, precision
    "highest"), False for the projection route (e.g. precision="high")."""
    N, P, T = n_samples, n_features, n_targets
    rows = N - 1 if fit_intercept else N
    m = min(rows, P)
    r = m
    stages = {}
    kfold = isinstance(cv, int) and not isinstance(cv, bool)
    if dual_route is None:
        dual_route = alpha_per_target and rows <= P
        dual_route &= cv is None or (kfold and n_alphas <= CHOLESKY_MAX_ALPHAS)
    if dual_route:  # fastridge._cv.DualRoute (FoldDualRoute with K folds)
        stages["gram"] = 1.0 * rows * rows * P
        if n_alphas <= CHOLESKY_MAX_ALPHAS:  # makers by Cholesky: no eigh
            stages["factor"] = (n_alphas + 1.0 / 3.0) * rows**3  # float64, timed in decompose
            if kfold:
                stages["factor"] += n_alphas * 2.0 * N**3 / cv
            stages["M"] = 0.0
            m = 0
        else:  # makers U diag(.) U^T from the eigh, symmetric products in the compute dtype
            stages["factor"] = 0.0
            stages["M"] = n_alphas * 1.0 * N * N * r
        stages["project"] = 0.0
        stages["cv"] = n_alphas * 2.0 * N * N * T
        stages["refit"] = 2.0 * P * N * T if solution == "primal" else 0.0
        if kfold:
            stages["refit"] += 2.0 * N * N * T / cv
        return {"eigh_size": m, "stages": stages, "gemm_flops": sum(stages.values())}
    # The Gram / covariance is a symmetric product (BLAS syrk): half a GEMM's flops.
    if rows <= P:
        stages["gram"] = 1.0 * rows * rows * P
        stages["M"] = 2.0 * rows * P * r
    else:
        stages["gram"] = 1.0 * N * P * P
        stages["M"] = 2.0 * N * P * r  # U = Z V / s
    stages["project"] = 2.0 * N * r * T
    eigh_count = 1
    if rows > P:  # the remainder (LOO, GCV), or FoldRefits' training projections
        stages["project"] += 2.0 * N * r * T
    if kfold and rows > P:  # FoldRefits: K eighs of r x r and the makers, float64
        eigh_count += cv
        stages["factor"] = 2.0 * (n_alphas + 3) * N * r * r
    if cv == "gcv":
        stages["cv"] = 0.0
    else:  # (in the Gram form each fold is one GEMM from UtY: fastridge._cv.LeaveGroupOut)
        stages["cv"] = n_alphas * 2.0 * N * r * T
    # primal coef = M (psi * UtY): (P x r) GEMM; dual = U (psi * UtY): (N x r)
    stages["refit"] = 2.0 * (P if solution == "primal" else N) * r * T
    return {
        "eigh_size": m,
        "eigh_count": eigh_count,
        "stages": stages,
        "gemm_flops": sum(stages.values()),
    }


def roofline(model: dict, calibration: dict, compute_dtype: str) -> dict:
    """Ideal seconds per stage from the measured GEMM and eigh rates."""
    rate64 = calibration["gemm"]["float64"]["gflops"] * 1e9
    rate_c = calibration["gemm"][compute_dtype]["gflops"] * 1e9
    eigh = calibration["eigh"]["float64"]
    eigh_seconds = eigh["seconds"] * (model["eigh_size"] / eigh["size"]) ** 3
    eigh_seconds *= model.get("eigh_count", 1)
    st = model["stages"]
    ideal = {
        # the Gram (and the dual route's Cholesky work) in float64, M = X^T U in the
        # compute dtype (fastridge._decompose, fastridge._cv)
        "decompose": (st["gram"] + st.get("factor", 0.0)) / rate64
        + st["M"] / rate_c
        + eigh_seconds,
        "project": st["project"] / rate_c,
        "cv": st["cv"] / rate_c,
        "refit": st["refit"] / rate_c,
    }
    ideal["total"] = sum(ideal.values())
    ideal["eigh"] = eigh_seconds
    return ideal
