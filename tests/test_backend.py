"""CPU BLAS routing (fastridge._backend.mm / addmm / eigh / column_sq_sums / row_sq_sums /
row_block_sums).

Both libraries must give the same products for every layout the engine
passes (transposed views, row and column slices, empty operands, an output
that is a slice of a larger array), and whole fits must agree between them.
"""

import numpy as np
import pytest
import torch
from conftest import make_problem
from numpy.testing import assert_allclose, assert_array_equal

from fastridge import FastRidgeCV
from fastridge import _backend as B


def _operands(dtype):
    g = torch.Generator().manual_seed(0)
    big_a = torch.randn(30, 40, generator=g, dtype=dtype)
    big_b = torch.randn(40, 50, generator=g, dtype=dtype)
    return {
        "contiguous": (big_a[:, :20], big_b[:20, :]),
        "transposed": (big_b[:20, :30].T, big_a.T[:20, :]),
        "row_slices": (big_a[5:25], big_b[:, 3:40]),
        "column_slices": (big_a[:, 10:30], big_b[::2, ::3]),  # strided: copied for BLAS
        "empty_inner": (big_a[:, :0], big_b[:0, :]),
        "empty_rows": (big_a[:0], big_b),
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "layout",
    ["contiguous", "transposed", "row_slices", "column_slices", "empty_inner", "empty_rows"],
)
def test_mm_matches_torch(blas, dtype, layout):
    a, b = _operands(dtype)[layout]
    expected = torch.mm(a, b)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(B.mm(a, b), expected, **tol)
    # into a row block of a larger array (what the refit does with coef_)
    host = torch.full((a.shape[0] + 4, b.shape[1]), 7.0, dtype=dtype)
    B.mm(a, b, out=host[2 : 2 + a.shape[0]])
    torch.testing.assert_close(host[2 : 2 + a.shape[0]], expected, **tol)
    assert torch.all(host[:2] == 7.0) and torch.all(host[2 + a.shape[0] :] == 7.0)
    # into a column-major (non BLAS-writable) output
    out_t = torch.empty((b.shape[1], a.shape[0]), dtype=dtype).T
    B.mm(a, b, out=out_t)
    torch.testing.assert_close(out_t, expected, **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_rows", [1, 7, 300, 513])
@pytest.mark.parametrize("sliced", [False, True])
def test_mm_gram_is_whole_and_symmetric(blas, dtype, n_rows, sliced):
    """Z @ Z.T (a symmetric product, syrk on the host, mirrored): the whole matrix,
    exactly symmetric on the host, into a fresh tensor or `out`; Z a row slice too."""
    g = torch.Generator().manual_seed(n_rows)
    big = torch.randn(n_rows + 2, 37, generator=g, dtype=dtype)
    Z = big[2:] if sliced else big[:n_rows].clone()
    expected = Z.double() @ Z.double().T
    tol = dict(rtol=1e-5, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-11)
    for got in (B.mm(Z, Z.T), B.mm(Z, Z.T, out=torch.full((n_rows, n_rows), np.nan, dtype=dtype))):
        torch.testing.assert_close(got.double(), expected, **tol)
        if blas == "numpy":
            assert torch.equal(got, got.T)


@pytest.mark.parametrize("alpha", [1.0, -1.0])
def test_addmm_matches_torch_and_may_alias(blas, alpha):
    a, b = _operands(torch.float64)["contiguous"]
    add = torch.randn(a.shape[0], b.shape[1], dtype=torch.float64)
    expected = torch.addmm(add, a, b, alpha=alpha)
    torch.testing.assert_close(B.addmm(add, a, b, alpha=alpha), expected, rtol=1e-12, atol=1e-12)
    out = add.clone()
    B.addmm(out, a, b, alpha=alpha, out=out)  # out is `add`: must not be clobbered first
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_eigh_matches_torch(blas):
    g = torch.Generator().manual_seed(1)
    Z = torch.randn(20, 30, generator=g, dtype=torch.float64)
    A = Z @ Z.T
    w, V = B.eigh(A)
    w_ref = torch.linalg.eigh(A)[0]
    torch.testing.assert_close(w, w_ref, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(V @ torch.diag(w) @ V.T, A, rtol=1e-12, atol=1e-10)
    assert bool(torch.all(w[1:] >= w[:-1]))


def test_column_sq_sums_is_accurate_in_float32(blas):
    rng = np.random.default_rng(0)
    scale = rng.random((3000, 1)) + 0.5  # uneven rows
    E = (rng.standard_normal((3000, 40)) * np.geomspace(1e-3, 1e3, 40) * scale).astype(np.float32)
    assert E.dtype == np.float32
    exact = (E.astype(np.float64) ** 2).sum(axis=0)
    got = B.column_sq_sums(torch.from_numpy(E.copy())).numpy()
    assert got.dtype == np.float64
    # a straight float32 sum over 3000 rows is off by ~1e-6 relative
    np.testing.assert_allclose(got, exact, rtol=5e-7)
    Et = torch.from_numpy(E.copy())
    plain = B.column_sq_sums(Et, overwrite=True).numpy()
    np.testing.assert_allclose(plain, (E.astype(np.float64) ** 2).sum(axis=0), rtol=5e-7)
    assert torch.equal(Et, torch.from_numpy(E) ** 2)  # squared in place


def test_column_sq_sums_edge_shapes():
    assert B.column_sq_sums(torch.zeros(0, 3)).tolist() == [0.0, 0.0, 0.0]
    assert B.column_sq_sums(torch.ones(5, 0)).shape == (0,)
    assert B.column_sq_sums(torch.full((1, 2), 3.0)).tolist() == [9.0, 9.0]


@pytest.mark.parametrize("shape", [(40, 90, 7), (90, 40, 7)], ids=["n<p", "n>p"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fits_agree_between_blas_libraries(shape, dtype):
    X, Y = make_problem(*shape, seed=3)
    X, Y = X.astype(dtype), Y.astype(dtype)
    fits = {}
    for lib in ("numpy", "torch"):
        B.set_cpu_blas(lib)
        try:
            fits[lib] = FastRidgeCV(alphas=np.logspace(-2, 3, 6), alpha_per_target=True).fit(X, Y)
        finally:
            B.set_cpu_blas(None)
    a, b = fits["numpy"], fits["torch"]
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=tol, atol=tol * np.abs(b.coef_).max())
    np.testing.assert_allclose(a.best_score_, b.best_score_, rtol=tol)
    assert np.mean(a.alpha_ == b.alpha_) >= (0.85 if dtype == np.float32 else 1.0)


def test_cpu_blas_env_override(monkeypatch):
    B.set_cpu_blas(None)
    try:
        monkeypatch.setenv(B.CPU_BLAS_ENV, "torch")
        assert B.cpu_blas() == "torch"
        B.set_cpu_blas(None)
        monkeypatch.setenv(B.CPU_BLAS_ENV, "numpy")
        assert B.cpu_blas() == "numpy"
        B.set_cpu_blas(None)
        monkeypatch.setenv(B.CPU_BLAS_ENV, "mkl")
        with pytest.raises(ValueError, match="FASTRIDGE_CPU_BLAS must be auto, numpy or torch"):
            B.cpu_blas()
    finally:
        B.set_cpu_blas(None)
    with pytest.raises(ValueError, match="cpu blas must be"):
        B.set_cpu_blas("openblas")


def test_default_rule_follows_torch_blas_and_cpu_vendor(monkeypatch):
    monkeypatch.setattr(torch.backends.mkl, "is_available", lambda: True)
    monkeypatch.setattr(B, "_cpu_vendor", lambda: "AuthenticAMD")
    assert B._default_cpu_blas() == "numpy"
    monkeypatch.setattr(B, "_cpu_vendor", lambda: "GenuineIntel")
    assert B._default_cpu_blas() == "torch"
    monkeypatch.setattr(torch.backends.mkl, "is_available", lambda: False)
    monkeypatch.setattr(B, "_cpu_vendor", lambda: "AuthenticAMD")
    assert B._default_cpu_blas() == "torch"


def test_fit_threads_torch_one_thread_beside_numpy_blas():
    """With numpy's BLAS doing the GEMMs, torch runs the elementwise passes on one
    thread during the fit (a second one fights OpenBLAS's workers), then its
    setting comes back; with torch's BLAS, n_threads goes to torch."""
    old = torch.get_num_threads()
    seen = {}
    try:
        torch.set_num_threads(2)
        for lib in ("numpy", "torch"):
            B.set_cpu_blas(lib)
            with B.cpu_threads(None, torch.device("cpu")):
                seen[lib, None] = torch.get_num_threads()
            with B.cpu_threads(3, torch.device("cpu")):
                seen[lib, 3] = torch.get_num_threads()
            assert torch.get_num_threads() == 2
    finally:
        B.set_cpu_blas(None)
        torch.set_num_threads(old)
    assert seen == {("numpy", None): 1, ("numpy", 3): 1, ("torch", None): 2, ("torch", 3): 3}


_AVX512 = ["avx2", "fma", "avx512f", "avx512bw"]


@pytest.mark.parametrize(
    "architecture, flags, environ, warns",
    [
        ("Haswell", _AVX512, {"OPENBLAS_CORETYPE": "Haswell"}, True),
        ("Zen", _AVX512, {"OPENBLAS_CORETYPE": "ZEN"}, True),
        ("SkylakeX", _AVX512, {"OPENBLAS_CORETYPE": "SkylakeX"}, False),  # AVX-512 kernels
        ("Haswell", ["avx2", "fma"], {"OPENBLAS_CORETYPE": "Haswell"}, False),  # no AVX-512
        ("Haswell", _AVX512, {}, False),  # OpenBLAS's own choice: nothing to unset
        ("", _AVX512, {"OPENBLAS_CORETYPE": "Haswell"}, False),  # not OpenBLAS
    ],
)
def test_blas_kernel_warning(architecture, flags, environ, warns):
    text = B.blas_kernel_warning(architecture, flags, environ)
    assert (text is not None) == warns
    if warns:
        assert architecture in text and "OPENBLAS_CORETYPE" in text


def test_blas_kernel_warning_in_verbose_fit_and_info(monkeypatch, capsys):
    import fastridge.solve
    from fastridge.cli import main

    for module in (B, fastridge.solve):  # info reads it from _backend, fit from solve
        monkeypatch.setattr(module, "blas_kernel_warning", lambda *a: "forced kernels (test)")
    B.set_cpu_blas("numpy")
    try:
        X, Y = make_problem(20, 5, 3, seed=0)
        FastRidgeCV(alphas=(1.0, 2.0), verbose=True).fit(X, Y)
        assert "warning: forced kernels (test)" in capsys.readouterr().err
        FastRidgeCV(alphas=(1.0, 2.0), verbose=False).fit(X, Y)
        assert "forced kernels" not in capsys.readouterr().err
    finally:
        B.set_cpu_blas(None)
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "host OpenBLAS kernels (scipy's):" in out and "warning: forced kernels (test)" in out


@pytest.mark.parametrize("n_cols", [1, 255, 256, 257, 700])
@pytest.mark.parametrize("buf_rows", [1, 3, 40])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_row_sq_sums_is_column_sq_sums_of_the_transpose(blas, n_cols, buf_rows, weighted, dtype):
    """One target per row: the same sums as column_sq_sums of E^T (block sums of
    SUM_BLOCK in E's dtype, then float64), through a buffer of fewer rows, E left
    as it was."""
    g = torch.Generator().manual_seed(n_cols + buf_rows)
    E = torch.randn(40, n_cols, generator=g, dtype=dtype) * 3.0
    w = torch.rand(n_cols, generator=g, dtype=dtype) + 0.5 if weighted else None
    before = E.clone()
    indicator = B.block_indicator(n_cols, w, dtype, E.device)
    assert indicator.shape == (n_cols, -(-n_cols // B.SUM_BLOCK))
    got = B.row_sq_sums(E, indicator, torch.empty(buf_rows, n_cols, dtype=dtype))
    assert torch.equal(E, before)
    scale = torch.ones(n_cols, dtype=dtype) if w is None else w.sqrt()
    by_column = B.column_sq_sums((E * scale).T.contiguous())  # (sum of (sqrt(w) e)^2)
    exact = ((E.double() ** 2) * (1.0 if w is None else w.double()[None, :])).sum(dim=1)
    # (float32: the two sum each block of 256 squares in their own order)
    tol = 4e-6 if dtype == torch.float32 else 1e-13
    np.testing.assert_allclose(got.numpy(), by_column.numpy(), rtol=tol)
    np.testing.assert_allclose(got.numpy(), exact.numpy(), rtol=tol)


@pytest.mark.parametrize("n_cols", [7, 300, 600])
@pytest.mark.parametrize("buf_rows", [1, 16, 64])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_row_block_sums_of_each_kind_per_fold(blas, n_cols, buf_rows, dtype):
    """Per row and fold (a `fold_indicator` of shuffled folds, some longer than
    SUM_BLOCK), the sums of E^2, E, |E| and Yt * E equal float64 sums; E and Yt
    are left as they were, and the squares through `row_block_sq_sums` are the same."""
    g = torch.Generator().manual_seed(n_cols + buf_rows)
    E = torch.randn(40, n_cols, generator=g, dtype=dtype) * 3.0
    Yt = torch.randn(40, n_cols, generator=g, dtype=dtype)
    before, y_before = E.clone(), Yt.clone()
    folds = np.array_split(np.random.default_rng(n_cols).permutation(n_cols), 3)
    indicator, fold_of = B.fold_indicator(n_cols, folds, dtype, E.device)
    buf = torch.empty(buf_rows, n_cols, dtype=dtype)
    got = B.row_block_sums(E, indicator, buf, B.ROW_SUM_KINDS, Yt)
    assert torch.equal(E, before) and torch.equal(Yt, y_before)
    E64, Y64 = E.double().numpy(), Yt.double().numpy()
    values = {"sq": E64**2, "sum": E64, "abs": np.abs(E64), "y_dot": Y64 * E64}
    tol = 4e-6 if dtype == torch.float32 else 1e-12
    for kind, v in values.items():
        per_fold = np.zeros((40, len(folds)))
        np.add.at(per_fold.T, fold_of.numpy(), (got[kind].numpy()).T)
        exact = np.stack([v[:, f].sum(axis=1) for f in folds], axis=1)
        np.testing.assert_allclose(per_fold, exact, rtol=tol, atol=tol * np.abs(v).sum())
    squares = B.row_block_sq_sums(E, indicator, buf)
    assert torch.equal(squares, got["sq"])
    with pytest.raises(ValueError, match="unknown row sums"):
        B.row_block_sums(E, indicator, buf, ("cube",))
    with pytest.raises(ValueError, match="need the targets"):
        B.row_block_sums(E, indicator, buf, ("y_dot",))


@pytest.mark.parametrize("n_index", [0, 1, 7, 30])
@pytest.mark.parametrize("buf_rows", [1, 4, 64])
def test_copy_rows(n_index, buf_rows):
    """dst[index] = src[index] through a small buffer; other rows untouched."""
    g = torch.Generator().manual_seed(n_index * 100 + buf_rows)
    src, dst = torch.randn(30, 9, generator=g), torch.randn(30, 9, generator=g)
    index = torch.randperm(30, generator=g)[:n_index]
    want = dst.clone()
    want[index] = src[index]
    B.copy_rows(src, dst, index, torch.empty(buf_rows, 9))
    assert torch.equal(dst, want)


@pytest.mark.parametrize("n", [1, 5, 255, 256, 257, 600])
def test_cholesky_inverse_lower_and_mirror(n, blas):
    numpy_blas = blas == "numpy"
    rng = np.random.default_rng(n)
    F = rng.standard_normal((n, n + 3))
    A = torch.from_numpy(F @ F.T + np.eye(n))
    ref = np.linalg.inv(A.numpy())
    work = A.clone()
    lower = B.cholesky_inverse(work)
    full = B.mirror_lower(lower, torch.empty_like(lower))
    assert_allclose(full.numpy(), ref, rtol=1e-9, atol=1e-12)
    assert_allclose(np.tril(lower.numpy()), np.tril(ref), rtol=1e-9, atol=1e-12)
    if numpy_blas:
        assert lower.data_ptr() == work.data_ptr()  # LAPACK worked in A's memory
    else:  # torch makes the whole inverse: `inverse_combination` relies on it
        assert_allclose(lower.numpy(), ref, rtol=1e-9, atol=1e-12)
    # the upper triangle is never read: poison it
    poisoned = lower.clone()
    poisoned[np.triu_indices(n, 1)] = np.nan
    big = torch.full((n + 1, n + 1), np.nan, dtype=torch.float64)
    out = B.mirror_lower(poisoned, big[1:, 1:], scale=2.5)
    assert_allclose(out.numpy(), 2.5 * ref, rtol=1e-9, atol=1e-12)
    assert np.isnan(big[0].numpy()).all() and np.isnan(big[:, 0].numpy()).all()
    # in place, over its own poisoned upper triangle
    B.mirror_lower(poisoned, poisoned, scale=2.5)
    assert_allclose(poisoned.numpy(), 2.5 * ref, rtol=1e-9, atol=1e-12)


def test_cholesky_inverse_in_place_on_the_cpu(blas):
    """Both CPU paths invert in A's own memory; a strided A (a view) is inverted too."""
    rng = np.random.default_rng(3)
    F = rng.standard_normal((300, 310))
    A = F @ F.T + np.eye(300)
    work = torch.from_numpy(A.copy())
    lower = B.cholesky_inverse(work)
    assert lower.data_ptr() == work.data_ptr()
    assert_allclose(np.tril(lower.numpy()), np.tril(np.linalg.inv(A)), rtol=1e-9, atol=1e-12)
    big = torch.zeros(301, 301, dtype=torch.float64)
    big[1:, 1:] = torch.from_numpy(A)
    view = B.cholesky_inverse(big[1:, 1:])
    assert_allclose(np.tril(view.numpy()), np.tril(np.linalg.inv(A)), rtol=1e-9, atol=1e-12)
    if blas == "torch":  # whole, also from a view
        assert_allclose(view.numpy(), np.linalg.inv(A), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("n", [1, 7, 300])
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.float64])
def test_inverse_combination_and_mv(n, out_dtype, blas):
    """scale * S - x a^T - a x^T into `out` and S @ x for S from `cholesky_inverse`
    (its lower triangle only on the numpy path: mirrored; whole through torch:
    in place), against numpy; `out` may be a view of a larger buffer."""
    rng = np.random.default_rng(n)
    F = rng.standard_normal((n, n + 3))
    A = F @ F.T + np.eye(n)
    S = np.linalg.inv(A)
    x, a = rng.standard_normal(n), rng.standard_normal(n)
    inv = B.cholesky_inverse(torch.from_numpy(A.copy()))
    assert_allclose(B.inverse_mv(inv, torch.from_numpy(x)).numpy(), S @ x, rtol=1e-9)
    big = torch.full((n + 1, n + 1), np.nan, dtype=out_dtype)
    pair = (torch.from_numpy(x), torch.from_numpy(a))
    got = B.inverse_combination(inv, big[1:, 1:], scale=2.5, minus_outer=pair)
    ref = 2.5 * S - np.outer(x, a) - np.outer(a, x)
    tol = 1e-6 if out_dtype == torch.float32 else 1e-12
    assert_allclose(got.numpy(), ref, rtol=tol, atol=tol * np.abs(ref).max())
    assert np.isnan(big[0].numpy()).all() and np.isnan(big[:, 0].numpy()).all()
    inv = B.cholesky_inverse(torch.from_numpy(A.copy()))  # without the rank-2 term
    got = B.inverse_combination(inv, torch.empty(n, n, dtype=out_dtype), scale=0.5)
    assert_allclose(got.numpy(), 0.5 * S, rtol=tol, atol=tol * np.abs(S).max())


@pytest.mark.parametrize("n", [0, 1, 256, 257, 512, 513, 1300])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gram_is_exactly_symmetric(n, dtype, blas):
    """mm(a, a.T): syrk on the numpy path, GEMMs of the lower triangle on the torch
    path (one GEMM up to GRAM_LEAF rows: torch's MKL on AMD Zen 5 made a float64
    512 x 512 Gram that was not exactly symmetric); either way the product to
    rounding, exactly symmetric, into `out` when given."""
    g = torch.Generator().manual_seed(n)
    a = torch.randn(n, 37, generator=g, dtype=dtype)
    want = a.double() @ a.double().T
    out = torch.full((n, n), np.nan, dtype=dtype)
    for got in (B.mm(a, a.T), B.mm(a, a.T, out=out)):
        assert torch.equal(got, got.T)
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        assert_allclose(got.double().numpy(), want.numpy(), rtol=tol, atol=tol * 37)
    assert B.mm(a, a.T, out=out).data_ptr() == out.data_ptr()
    if blas == "torch":  # the GEMMs of the lower triangle are the only ones
        blocks = []
        real = torch.mm

        def recording(x, y, out=None):
            blocks.append((x.shape[0], y.shape[1]))
            return real(x, y, out=out)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(torch, "mm", recording)
            B.mm(a, a.T)
        made = sum(rows * cols for rows, cols in blocks)  # entries computed
        assert n * n / 2 <= made <= n * n / 2 + n * B.GRAM_LEAF / 2
        assert len(blocks) == 1 or max(blocks) < (n, n)


@pytest.mark.parametrize("n", [300, 1300])
def test_gram_stays_on_its_device(n):
    """The torch path's blocked Gram is made on its operand's device (CUDA in use;
    "meta" here, which checks devices and shapes without a GPU), into `out` only
    when `out` is there too."""
    a = torch.empty((n, 37), device="meta")
    got = B.mm(a, a.T)
    assert got.device.type == "meta" and got.shape == (n, n)
    out = torch.empty((n, n), device="meta")
    assert B.mm(a, a.T, out=out) is out


def test_not_positive_definite_gives_none(blas):
    A = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=torch.float64)
    assert B.cholesky_inverse(A.clone()) is None


@pytest.mark.parametrize("n", [1, 2, 7, 255, 256, 257, 600])
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("ops", ["host", "device"])
def test_reflected_maker_is_h_s_h(n, out_dtype, ops, blas, monkeypatch):
    """DualRoute's maker in sample coordinates, written in one pass from the
    reflected-coordinate inverse (on the numpy path its lower triangle only, the
    upper triangle poisoned):
    H [0, 0; 0, alpha inv] H, rounded to `out`'s dtype, and its float64
    diagonal; `lower_symv` and `mirror_lower(minus_outer=...)` on their own.
    ops="device" runs the torch ops used on CUDA, here on the CPU."""
    from fastridge._cv import DualRoute

    if ops == "device":
        monkeypatch.setattr(B, "_host_or_device", lambda lower, out=None: ((lower, out), torch))

    rng = np.random.default_rng(n)
    F = rng.standard_normal((n, n + 2))
    inv = F @ F.T / n + np.eye(n)
    v = rng.standard_normal(n + 1)
    alpha = 3.5
    S = np.zeros((n + 1, n + 1))
    S[1:, 1:] = alpha * inv
    H = np.eye(n + 1) - 2.0 * np.outer(v, v) / (v @ v)
    want = H @ S @ H
    poisoned = torch.from_numpy(inv.copy())
    poisoned[np.triu_indices(n, 1)] = np.nan
    x, a = rng.standard_normal(n), rng.standard_normal(n)
    assert_allclose(B.lower_symv(poisoned, torch.from_numpy(x)).numpy(), inv @ x, rtol=1e-12)
    pair = (torch.from_numpy(x), torch.from_numpy(a))
    got = B.mirror_lower(poisoned, torch.empty(n, n), scale=2.0, minus_outer=pair)
    ref = 2.0 * inv - np.outer(x, a) - np.outer(a, x)
    assert_allclose(got.numpy(), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    out = torch.full((n + 1, n + 1), np.nan, dtype=out_dtype)
    # as `cholesky_inverse` gives it: the lower triangle only on the numpy path
    given = poisoned if blas == "numpy" else torch.from_numpy(inv.copy())
    diag = DualRoute._reflected(given, alpha, torch.from_numpy(v), out)
    tol = 1e-6 if out_dtype == torch.float32 else 1e-12
    assert_allclose(out.numpy(), want, rtol=tol, atol=tol * np.abs(want).max())
    assert diag.dtype == torch.float64
    assert_allclose(diag.numpy(), np.diag(want), rtol=1e-12, atol=1e-12 * np.abs(want).max())


@pytest.mark.parametrize("n", [1, 6, 300])
@pytest.mark.parametrize("deficit", [0, 1, 5])
@pytest.mark.parametrize("with_work", [False, True])
def test_pivoted_cholesky_rank(n, deficit, with_work, blas):
    """Full rank (settled by the plain Cholesky of A - tol I) and rank-deficient
    (the pivoted Cholesky, after that Cholesky failed part-way in the same work
    buffer) Gram matrices: numpy's matrix_rank with the same tolerance; a zero
    matrix has rank 0. A is left as it was; the work buffer is the one used."""

    def rank_of(G, tol):
        A = torch.from_numpy(G.copy())
        work = torch.full_like(A, np.nan) if with_work else None
        got = B.pivoted_cholesky_rank(A, tol, work=work)
        np.testing.assert_array_equal(A.numpy(), G)
        if with_work and n > 1:
            assert not torch.isnan(work).all()  # the factorisations ran in it
        return got

    rank = max(n - deficit, 0)
    rng = np.random.default_rng(n + deficit)
    Z = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, n + 4))
    G = Z @ Z.T
    if rank == 0:
        assert rank_of(np.zeros((n, n)), 1e-12) == 0
        return
    tol = (n + 4) * np.finfo(np.float64).eps * G.diagonal().max()
    assert np.linalg.matrix_rank(G, tol=tol) == rank
    assert rank_of(G, tol) == rank
    # exact eigenvalues just above and below tol (a diagonal matrix: no rounding)
    d = np.linspace(1.0, 2.0, n)
    d[: min(deficit, n)] = 0.25e-9
    if n > deficit:
        d[deficit] = 4e-9
    want = n - min(deficit, n)
    assert rank_of(np.diag(d[::-1].copy()), 1e-9) == want
    # a full matrix whose plain Cholesky fails late, at the last pivots
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    e = np.linspace(2.0, 1.0, n)
    e[n - min(deficit, n) :] = 1e-13
    assert rank_of((Q * e) @ Q.T, 1e-9) == want


def test_workspace_pieces():
    """Pieces are page-aligned, consecutive and disjoint views of the buffer, in any
    dtype, while they fit; then (and with no buffer) plain new tensors."""
    buf = torch.zeros(1000, 1000, dtype=torch.float64)  # 8,000,000 bytes
    space = B.Workspace(buf)
    base = -(-buf.data_ptr() // 4096) * 4096  # the buffer's first page boundary
    a = space.empty((500, 500), torch.float64, "cpu")  # 2,000,000 bytes
    b = space.empty((700, 700), torch.float32, "cpu")  # 1,960,000 bytes
    c = space.empty((2, 3), torch.int64, "cpu")
    big = space.empty((1200, 1000), torch.float32, "cpu")  # 4.8 MB: does not fit any more
    assert a.data_ptr() == base
    assert b.data_ptr() == base + 2002944  # 2,000,000 rounded up to pages
    assert c.data_ptr() == base + 2002944 + 1961984
    for t, dtype in ((a, torch.float64), (b, torch.float32), (c, torch.int64)):
        assert t.dtype == dtype and t.is_contiguous() and t.data_ptr() % 4096 == 0
        assert t.untyped_storage().data_ptr() == buf.untyped_storage().data_ptr()
    assert big.untyped_storage().data_ptr() != buf.untyped_storage().data_ptr()
    a.fill_(1.0)
    b.fill_(2.0)
    c.fill_(3)
    assert float(a.sum()) == 250000 and float(b.sum()) == 980000 and int(c.sum()) == 18
    assert B.Workspace(None).empty((3,), torch.float32, "cpu").shape == (3,)


def test_dual_route_makers_in_a_workspace_are_the_same():
    """DualRoute with a workspace (the makers in it) gives bit-identical makers,
    weights and rank to one with fresh memory; the workspace's contents do not
    matter (filled with NaN)."""
    from fastridge._cv import DualRoute
    from fastridge._decompose import decompose

    rng = np.random.default_rng(5)
    X = torch.from_numpy(rng.standard_normal((40, 70)))
    alphas = [0.5, 5.0, 50.0]
    fresh = DualRoute(decompose(X.clone(), eigen=False), alphas)
    # 51,200 bytes: pieces start on page-aligned addresses, so A (39^2 float64) and two
    # makers (40^2 float64) end 41,472 bytes past the first page boundary, a third
    # 57,856: two fit and three do not wherever the buffer starts (<= 4095 bytes lost)
    space = torch.full((40, 160), float("nan"), dtype=torch.float64)
    placed = DualRoute(decompose(X.clone(), eigen=False), alphas, workspace=space)
    assert placed.rank == fresh.rank == 39
    ptr = space.untyped_storage().data_ptr()
    inside = [m.untyped_storage().data_ptr() == ptr for m in placed.makers]
    assert inside == [True, True, False]
    for got, want in zip(placed.makers, fresh.makers, strict=True):
        assert_array_equal(got.numpy(), want.numpy())
    assert_array_equal(placed.row_weights.numpy(), fresh.row_weights.numpy())


def test_dual_route_last_maker_takes_the_factorisations_place():
    """The rank is found first, in the buffer of the factorisations; the last alpha
    then factorises the Gram itself and its maker goes where the factorisations
    were. float32 makers (40^2 * 4 bytes) in a 32,000-byte workspace: the buffer
    of the factorisations (39^2 float64) and two makers fit in it for any start
    (page-aligned pieces end 26,880 bytes past the first page boundary), a third
    one after them never does (35,072), so the third is inside only in that
    buffer. Bit-identical to fresh memory, no two makers overlapping."""
    from fastridge._cv import DualRoute
    from fastridge._decompose import decompose

    rng = np.random.default_rng(6)
    X = torch.from_numpy(rng.standard_normal((40, 70)))
    alphas = [0.5, 5.0, 50.0]

    def route(workspace=None):
        d = decompose(X.clone(), eigen=False, compute_dtype=torch.float32)
        return DualRoute(d, alphas, workspace=workspace)

    fresh = route()
    space = torch.full((40, 100), float("nan"), dtype=torch.float64)
    placed = route(space)
    assert placed.rank == fresh.rank == 39
    lo = space.untyped_storage().data_ptr()
    spans = sorted((m.data_ptr(), m.data_ptr() + m.nbytes) for m in placed.makers)
    assert all(lo <= a and b <= lo + space.nbytes for a, b in spans)
    assert all(b <= a2 for (_, b), (a2, _) in zip(spans[:-1], spans[1:], strict=True))
    for got, want in zip(placed.makers, fresh.makers, strict=True):
        assert_array_equal(got.numpy(), want.numpy())
    assert_array_equal(placed.row_weights.numpy(), fresh.row_weights.numpy())
    one = DualRoute(decompose(X.clone(), eigen=False, compute_dtype=torch.float32), [5.0])
    assert_array_equal(one.makers[0].numpy(), fresh.makers[1].numpy())


def _vm_flags(a: np.ndarray) -> list[str] | None:
    """VmFlags of the mapping that holds the middle of array `a` (Linux
    /proc/self/smaps), or None. (numpy advises from the first whole page on, so
    the mapping that holds the array's first byte may not carry the flag.)"""
    try:
        lines = open("/proc/self/smaps").read().splitlines()
    except OSError:
        return None
    addr, inside = a.__array_interface__["data"][0] + a.nbytes // 2, False
    for line in lines:
        head = line.split()[0]
        if "-" in head and ":" not in head:
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo <= addr < hi
        elif inside and line.startswith("VmFlags:"):
            return line.split()[1:]
    return None


def test_large_host_arrays_are_not_huge_page_advised(tmp_path):
    """fastridge's own large host arrays come from torch's allocator: numpy's would be
    madvise(MADV_HUGEPAGE)'d ("hg" in VmFlags), whose first touch is 20-40x slower
    on this project's VMs (see `host_empty`). The control, a plain numpy array of
    the same size, must carry the flag, or the check says nothing."""
    from fastridge import _io
    from fastridge._chunks import TargetReader

    # float32: 40 MiB, above numpy's 4 MiB threshold for the hint, and above glibc's
    # largest mmap threshold (32 MiB): smaller blocks may come from heap memory
    # that numpy advised earlier (the flag stays with the memory, whoever reuses it)
    n = 10 << 20
    control = np.empty(n, dtype=np.float32)
    flags = _vm_flags(control)
    if flags is None or "hg" not in flags:
        pytest.skip("numpy does not ask for huge pages here (no /proc, or its hint is off)")
    path = tmp_path / "x.npy"
    np.save(path, np.arange(n, dtype=np.float32).reshape(1024, -1))
    mapped = np.load(path, mmap_mode="r")  # read-only, as the command line opens X
    made = {
        "host_empty": B.host_empty((n,), np.float32),
        "host_empty int64": B.host_empty((n,), np.int64),
        "host_copy": B.host_copy(mapped, np.float64),
        "as_tensor of a read-only memmap": B.as_tensor(
            mapped, torch.device("cpu"), torch.float64
        ).numpy(),
        "as_float of int32": _io.as_float(np.ones((1024, n // 1024), np.int32), "X"),
        "read_rows": _io.read_rows(path, slice(0, 1024)),
        "a chunk of strided Y": TargetReader(
            np.asarray(mapped), torch.device("cpu"), torch.float32
        )._host_block(slice(0, 10239)),
    }
    for name, a in made.items():
        assert a.nbytes > 32 << 20, name
        assert "hg" not in _vm_flags(a), name


def test_host_copy_converts_and_copies():
    a = np.arange(24, dtype=np.float32).reshape(4, 6)[:, ::2]  # strided
    a.flags.writeable = False
    c = B.host_copy(a, np.float64)
    assert c.dtype == np.float64 and c.flags.c_contiguous and c.flags.writeable
    assert_array_equal(c, a)
    assert not np.may_share_memory(c, a)
    assert B.host_copy(a).dtype == np.float32
    swapped = np.arange(5, dtype=">f8")  # no torch dtype: numpy's memory
    assert_array_equal(B.host_copy(swapped), swapped)
    assert B.host_empty((2, 3), np.bool_).dtype == np.bool_


def test_torch_path_fit_calls_no_scipy_blas(monkeypatch):
    """On the torch path a leave-one-out fit by Cholesky (full rank) runs all its
    linear algebra in torch: a scipy BLAS / LAPACK call would leave OpenBLAS's
    threads spinning beside torch's next call. Same result as the numpy path."""
    from scipy.linalg import blas, lapack

    from fastridge import FastRidgeCV

    rng = np.random.default_rng(0)
    X = rng.standard_normal((600, 700))  # a Gram of more than GRAM_LEAF rows
    Y = X[:, :3] @ rng.standard_normal((3, 4)) + rng.standard_normal((600, 4))
    fit = FastRidgeCV(alphas=(1e2, 1e3, 1e4), alpha_per_target=True)
    B.set_cpu_blas("numpy")
    try:
        ref = fit.fit(X, Y)
        want_coef, want_alpha = ref.coef_.copy(), ref.alpha_.copy()
        B.set_cpu_blas("torch")

        def refuse(*args, **kwargs):
            raise AssertionError("scipy BLAS / LAPACK called on the torch path")

        for module in (blas, lapack):
            for name in dir(module):
                if name[:1] in "sd" and name[1:] in ("gemm", "syrk", "symv", "potrf", "potri"):
                    monkeypatch.setattr(module, name, refuse)
        got = fit.fit(X, Y)
    finally:
        B.set_cpu_blas(None)
    assert_allclose(got.alpha_, want_alpha)
    assert_allclose(got.coef_, want_coef, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_constant_columns_exact_both_ways(weighted):
    """A constant column's mean is its value exactly, over the rows of positive
    weight; other columns keep the mean given. The CPU's way (the columns whose
    first two positive rows agree, compared whole) and the one-pass way used on
    other devices give the same."""
    from fastridge._backend import _constant_columns_exact_in_one_pass, constant_columns_exact

    rng = np.random.default_rng(0)
    y = torch.from_numpy(rng.standard_normal((9, 6)))
    y[:, 1] = 0.1  # constant
    y[:, 2] = 0.1
    y[4, 2] = 0.2  # constant but for row 4
    y[:, 3] = -7.3e5
    y[0, 3] = 1.0  # constant but for row 0
    y[1, 4] = y[0, 4]  # first two rows agree, the rest do not
    weights = None
    if weighted:
        weights = torch.from_numpy(rng.uniform(0.5, 2.0, 9))
        weights[[0, 4]] = 0.0
    means = y.mean(dim=0) + 1e-3  # (so that a replaced mean shows)
    got = constant_columns_exact(y, means, weights)
    assert torch.equal(got, _constant_columns_exact_in_one_pass(y, means, weights))
    constant = {1} | ({2, 3} if weighted else set())
    for j in range(6):
        expected = y[1, j] if j in constant else means[j]
        assert got[j] == expected, j


def test_svd_falls_back_to_gesvd_where_gesdd_fails(blas, monkeypatch):
    """gesdd can fail to converge on some matrices (numpy's did on one of a fuzz's
    3,000 reference fits): `svd` then takes gesvd's QR iteration."""
    import scipy.linalg

    A = torch.tensor(np.random.default_rng(0).standard_normal((30, 7)))
    real_svd, real_scipy = torch.linalg.svd, scipy.linalg.svd
    drivers = []

    def failing_torch(*args, **kwargs):
        raise torch.linalg.LinAlgError("did not converge")

    def failing_gesdd(*args, lapack_driver="gesdd", **kwargs):
        drivers.append(lapack_driver)
        if lapack_driver == "gesdd":
            raise np.linalg.LinAlgError("SVD did not converge")
        return real_scipy(*args, lapack_driver=lapack_driver, **kwargs)

    monkeypatch.setattr(torch.linalg, "svd", failing_torch)
    monkeypatch.setattr(scipy.linalg, "svd", failing_gesdd)
    U, s, Vt = B.svd(A)
    assert drivers[-1] == "gesvd"
    assert_allclose((U * s) @ Vt, A.numpy(), atol=1e-12)
    assert_allclose(s, real_svd(A).S, rtol=1e-12)


def _openblas_threads() -> list[int]:
    return [pool.num_threads for pool in B._openblas_pools()]


@pytest.mark.skipif(not B._openblas_pools(), reason="no OpenBLAS (threadpoolctl) to set")
def test_small_host_calls_run_on_one_blas_thread(monkeypatch):
    """Small host factorisations run on one OpenBLAS thread (threads that meet at
    barriers stall for milliseconds on a busy machine, and do not pay on an idle
    one), large ones on the threads set; GEMMs, small ones too, on the threads set
    (on an idle machine they pay from ~1e6 flops), but for the small ones on one
    thread while the cores are busy; the setting is put back after each call."""
    from scipy.linalg import blas, lapack
    from threadpoolctl import threadpool_limits

    seen = []

    def spy(module, name):
        fn = getattr(module, name)

        def wrapped(*args, **kwargs):
            seen.append((name, max(_openblas_threads())))
            return fn(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapped)

    for module, name in ((blas, "dgemm"), (blas, "dsyrk"), (lapack, "dpotri"), (lapack, "dpstrf")):
        spy(module, name)
    B.set_cpu_blas("numpy")
    try:
        with threadpool_limits(limits=2, user_api="blas"):
            if max(_openblas_threads()) < 2:
                pytest.skip("one CPU: OpenBLAS runs on one thread anyway")
            rng = np.random.default_rng(0)
            small, large = (torch.from_numpy(rng.standard_normal((m, m + 5))) for m in (40, 600))
            monkeypatch.setattr(B, "_busy", False)
            B.mm(small, small.T.contiguous())  # 2 * 40 * 45 * 40 flops, idle: the threads set
            monkeypatch.setattr(B, "_busy", True)
            B.mm(small, small.T.contiguous())  # busy: one thread
            monkeypatch.setattr(B, "_busy", False)
            B.mm(large, large.T.contiguous())  # 4.4e8 flops: the threads set
            B.mm(large, large.T)  # a Gram (syrk), as large
            for A in (small, large):
                K = A @ A.T + torch.eye(A.shape[0], dtype=A.dtype)
                B.cholesky_inverse(K.clone())
            # rank-deficient: past the plain Cholesky, to the pivoted one
            low = small[:, :10] @ small[:, :10].T
            assert B.pivoted_cholesky_rank(low, tol=1e-8 * float(low.diagonal().max())) == 10
            assert max(_openblas_threads()) == 2  # put back
    finally:
        B.set_cpu_blas(None)
    assert seen == [
        ("dgemm", 2), ("dgemm", 1), ("dgemm", 2), ("dsyrk", 2), ("dpotri", 1), ("dpotri", 2),
        ("dpstrf", 1),
    ]  # fmt: skip


def test_small_torch_factorisations_run_on_one_thread(monkeypatch):
    """On the torch path, small CPU factorisations run on one torch thread (its
    OpenMP threads stall as OpenBLAS's on a busy machine), large ones on the
    threads set; torch's setting is put back."""
    seen = []

    def spy(module, name):
        fn = getattr(module, name)

        def wrapped(*args, **kwargs):
            seen.append((name, torch.get_num_threads()))
            return fn(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapped)

    spy(torch, "cholesky_inverse")
    spy(torch.linalg, "eigh")
    saved = torch.get_num_threads()
    B.set_cpu_blas("torch")
    try:
        torch.set_num_threads(2)
        rng = np.random.default_rng(0)
        for m in (40, 600):
            A = torch.from_numpy(rng.standard_normal((m, m + 5)))
            K = A @ A.T + torch.eye(m, dtype=A.dtype)
            B.cholesky_inverse(K.clone())
            B.eigh(K)
        assert torch.get_num_threads() == 2  # put back
    finally:
        B.set_cpu_blas(None)
        torch.set_num_threads(saved)
    assert seen == [("cholesky_inverse", 1), ("eigh", 1), ("cholesky_inverse", 2), ("eigh", 2)]


def test_large_gemms_probe_whether_the_cores_are_busy(monkeypatch):
    """A GEMM of PROBE_FLOPS or more records whether its threads got their cores (CPU
    seconds per thread per wall second); while they did not, factorisations of any
    size run on one thread; a later probe that finds them free lifts it."""
    import types

    monkeypatch.setattr(B, "_busy", False)
    monkeypatch.setattr(B, "_warmed", {True, False})  # (no warm-up GEMM first)
    monkeypatch.setattr(B, "_blas_threads", lambda numpy_path: 2)
    clock = {"wall": 0.0, "cpu": 0.0}
    fake = types.SimpleNamespace(
        perf_counter=lambda: clock["wall"], process_time=lambda: clock["cpu"]
    )
    monkeypatch.setattr(B, "time", fake)

    def gemm(flops, wall, cpu):
        with B._probing(flops, numpy_path=True):
            clock["wall"] += wall
            clock["cpu"] += cpu

    large = torch.zeros(600, 600)
    assert not B.small_factorisation(large)
    gemm(B.PROBE_FLOPS, wall=1.0, cpu=1.0)  # 2 threads, one core's worth: busy
    assert B._busy and B.small_factorisation(large)
    gemm(B.PROBE_FLOPS / 2, wall=1.0, cpu=2.0)  # too small to tell: no change
    assert B._busy
    gemm(B.PROBE_FLOPS, wall=1.0, cpu=1.9)  # both cores
    assert not B._busy and not B.small_factorisation(large)
    assert B.small_factorisation(torch.zeros(40, 40))  # small ones always
