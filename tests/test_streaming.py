"""Chunk streaming: out-of-memory back-off (injected on CPU) and chunk sizing."""

import numpy as np
import pytest
import torch
from conftest import make_problem
from numpy.testing import assert_allclose, assert_array_equal

import fastridge.solve as solve_module
from fastridge import ridge_cv
from fastridge._chunks import auto_target_chunk, parse_bytes

ALPHAS = (0.1, 1.0, 10.0, 100.0)


def _inject_oom(monkeypatch, max_width):
    """Make the projection step fail like a full GPU whenever a chunk is wider than max_width."""
    real = solve_module.project
    calls = []

    def project(decomp, Y, **kw):
        calls.append(Y.shape[1])
        if Y.shape[1] > max_width:
            raise torch.OutOfMemoryError("injected: CUDA out of memory")
        return real(decomp, Y, **kw)

    monkeypatch.setattr(solve_module, "project", project)
    return calls


@pytest.mark.parametrize("alpha_per_target", [True, False])
def test_out_of_memory_halves_the_chunk_and_keeps_results(monkeypatch, capsys, alpha_per_target):
    X, Y = make_problem(25, 40, 37, seed=1)
    ref = ridge_cv(X, Y, ALPHAS, alpha_per_target=alpha_per_target)
    calls = _inject_oom(monkeypatch, max_width=5)
    done = []
    got = ridge_cv(
        X,
        Y,
        ALPHAS,
        alpha_per_target=alpha_per_target,
        target_chunk=16,
        verbose=True,
        on_chunk=lambda sl: done.append((sl.start, sl.stop)),
    )
    assert calls[:3] == [16, 8, 4]  # 16 fails, 8 fails, 4 works
    assert got.target_chunk == 4
    assert "out of memory" in capsys.readouterr().err
    # every target written exactly once, in order, by chunks that completed
    covered = np.concatenate([np.arange(a, b) for a, b in done])
    assert_array_equal(covered, np.arange(37))
    assert_array_equal(got.alpha_index, ref.alpha_index)
    assert_allclose(got.coef, ref.coef, rtol=1e-12, atol=1e-14)
    assert_allclose(got.best_score, ref.best_score, rtol=1e-12)


def test_out_of_memory_at_one_target_is_raised(monkeypatch):
    X, Y = make_problem(10, 5, 3)
    _inject_oom(monkeypatch, max_width=0)
    with pytest.raises(torch.OutOfMemoryError):
        ridge_cv(X, Y, ALPHAS, target_chunk=2)


def test_auto_chunk_follows_the_budget():
    per_target = 4 * (5 * 1000 + 4 * 1000 + 2 * 5000 + 5)
    cpu = torch.device("cpu")
    assert auto_target_chunk(10**6, per_target, cpu, "100MB") == 10**8 // per_target
    assert auto_target_chunk(10, per_target, cpu, "100MB") == 10
    assert auto_target_chunk(10**6, per_target, cpu, 1) == 1
    assert parse_bytes("2GiB") == 2 * 2**30 and parse_bytes("1.5GB") == 1.5e9
    assert parse_bytes(1024) == 1024


def test_prefetched_chunk_is_the_chunk_read():
    from fastridge._chunks import TargetReader

    Y = np.random.default_rng(0).standard_normal((6, 4, 5))
    reader = TargetReader(Y, torch.device("cpu"), torch.float64, read_ahead=True)
    direct = reader.read(slice(3, 11)).clone()
    reader.prefetch(slice(3, 11))
    assert reader._pending is not None
    got = reader.read(slice(3, 11))
    assert reader._pending is None  # consumed
    assert torch.equal(got, direct)
    assert torch.equal(got, torch.from_numpy(Y.reshape(6, 20)[:, 3:11]))
    # a prefetch for another slice is ignored, not returned by mistake
    reader.prefetch(slice(0, 2))
    assert torch.equal(reader.read(slice(3, 11)), direct)


@pytest.mark.gpu
def test_cuda_prefetch_through_pinned_memory_matches():
    X, Y = make_problem(30, 20, 40, seed=3, dtype=np.float32)
    cpu = ridge_cv(X, Y, ALPHAS, alpha_per_target=True, target_chunk=7, device="cpu")
    gpu = ridge_cv(X, Y, ALPHAS, alpha_per_target=True, target_chunk=7, device="cuda")
    assert_array_equal(gpu.alpha_index, cpu.alpha_index)
    assert_allclose(gpu.coef, cpu.coef, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
def test_cupy_in_cupy_out_without_copies():
    cupy = pytest.importorskip("cupy")
    from fastridge import FastRidgeCV

    X, Y = make_problem(30, 20, 6, seed=4, dtype=np.float32)
    Xc, Yc = cupy.asarray(X), cupy.asarray(Y)
    m = FastRidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(Xc, Yc)
    assert isinstance(m.coef_, cupy.ndarray) and isinstance(m.predict(Xc), cupy.ndarray)
    # DLPack shares memory: the torch view of a cupy array is the same buffer
    assert torch.from_dlpack(Xc).data_ptr() == Xc.data.ptr
    ref = FastRidgeCV(alphas=ALPHAS, alpha_per_target=True, device="cpu").fit(X, Y)
    assert_array_equal(cupy.asnumpy(m.alpha_) if hasattr(m.alpha_, "get") else m.alpha_, ref.alpha_)
    assert_allclose(cupy.asnumpy(m.coef_), ref.coef_, rtol=1e-4, atol=1e-5)


class _Rows:
    """A coef_out that is not an ndarray (as the command line's RowWriter): the
    results go through ResultWriter's host copy instead of a direct GEMM write."""

    def __init__(self, shape):
        self.a = np.zeros(shape)
        self.shape = shape
        self.dtype = self.a.dtype

    def __setitem__(self, sl, rows):
        self.a[sl] = rows


@pytest.mark.parametrize("alpha_per_target", [True, False])
@pytest.mark.parametrize("solution", ["primal", "dual"])
@pytest.mark.parametrize("oom", [False, True])
@pytest.mark.parametrize("defer", [True, False], ids=["deferred", "at_once"])
def test_result_writes_match_and_report_only_written_chunks(
    monkeypatch, alpha_per_target, solution, oom, defer
):
    """Deferred: the CUDA order (chunk k's results land on the host after chunk k+1 is
    queued), run on CPU. At once: the CPU order, each chunk's coefficients through
    one reused buffer (uneven last chunk, and narrower chunks after an out-of-memory
    retry). Either way: same results, every chunk written once, `on_chunk` only
    after the chunk's rows are in place, and a retry loses no pending chunk."""
    X, Y = make_problem(25, 40, 37, seed=2)
    kw = dict(alpha_per_target=alpha_per_target, solution=solution)
    ref = ridge_cv(X, Y, ALPHAS, **kw)
    monkeypatch.setattr(solve_module, "_DEFER_RESULTS", defer)
    if oom:
        _inject_oom(monkeypatch, max_width=5)
    coef = _Rows(ref.coef.shape)
    written = []

    def on_chunk(sl):
        # the rows of a reported chunk are final
        assert_allclose(coef.a[sl], ref.coef[sl], rtol=1e-12, atol=1e-14)
        written.append((sl.start, sl.stop))

    got = ridge_cv(X, Y, ALPHAS, target_chunk=8, coef_out=coef, on_chunk=on_chunk, **kw)
    covered = np.concatenate([np.arange(a, b) for a, b in written])
    assert_array_equal(covered, np.arange(37))
    assert_allclose(coef.a, ref.coef, rtol=1e-12, atol=1e-14)
    assert_allclose(got.intercept, ref.intercept, rtol=1e-12, atol=1e-14)
    assert_array_equal(got.alpha_index, ref.alpha_index)
    assert_allclose(got.best_score, ref.best_score, rtol=1e-12)


def test_result_writer_defers_by_one_chunk():
    from fastridge._chunks import ResultWriter

    log = []
    w = ResultWriter(torch.device("cpu"), defer=True)
    for k in range(3):
        t = torch.full((2,), float(k))
        w.submit({"x": t}, lambda host, k=k: log.append((k, host["x"].tolist())))
        t.fill_(-1.0)  # the device buffer may be reused at once: the copy was taken
        assert [k_ for k_, _ in log] == list(range(k))  # chunk k waits for chunk k+1
    w.close()
    assert log == [(0, [0.0, 0.0]), (1, [1.0, 1.0]), (2, [2.0, 2.0])]
    w.close()  # nothing pending: no-op
    assert len(log) == 3
    now = ResultWriter(torch.device("cpu"))
    assert not now.defer
    now.submit({"x": torch.ones(1)}, lambda host: log.append("now"))
    assert log[-1] == "now"


@pytest.mark.gpu
def test_cuda_deferred_copy_back_matches():
    X, Y = make_problem(30, 50, 40, seed=3)
    ref = ridge_cv(X, Y, ALPHAS, alpha_per_target=True)
    got = ridge_cv(X, Y, ALPHAS, alpha_per_target=True, device="cuda", target_chunk=7)
    assert_allclose(got.coef, ref.coef, rtol=1e-10, atol=1e-12)
    assert_array_equal(got.alpha_index, ref.alpha_index)


def test_reader_copies_into_a_given_buffer():
    """With `out`, host columns go straight into the buffer (any layout, dtype cast)."""
    from fastridge._chunks import TargetReader

    Y = np.random.default_rng(5).standard_normal((6, 4, 5))
    cpu = torch.device("cpu")
    for source, ref in [
        (Y, Y.reshape(6, 20)),  # C-contiguous: a strided view is copied
        (Y.transpose(0, 2, 1), Y.transpose(0, 2, 1).reshape(6, 20)),  # gathered by index
    ]:
        reader = TargetReader(source, cpu, torch.float32)
        out = torch.full((6, 7), np.nan, dtype=torch.float32)
        got = reader.read(slice(9, 16), out=out)
        assert got.data_ptr() == out.data_ptr()
        assert_array_equal(got.numpy(), ref[:, 9:16].astype(np.float32))
    # without `out` nothing changes: a fresh tensor of the compute dtype
    assert TargetReader(Y, cpu, torch.float32).read(slice(0, 3)).dtype == torch.float32


def test_cpu_reader_does_not_read_ahead():
    from fastridge._chunks import TargetReader

    reader = TargetReader(np.ones((4, 6)), torch.device("cpu"), torch.float64)
    reader.prefetch(slice(0, 3))
    assert reader._pending is None


def test_reused_buffer_serves_a_smaller_shape_from_the_same_memory():
    from fastridge._backend import reused_buffer

    work = {}
    big = reused_buffer(work, "b", (5, 8), torch.float32, torch.device("cpu"))
    small = reused_buffer(work, "b", (5, 3), torch.float32, torch.device("cpu"))
    assert small.shape == (5, 3) and small.is_contiguous()
    assert small.data_ptr() == big.data_ptr()
    assert reused_buffer(work, "b", (5, 8), torch.float32, torch.device("cpu")).shape == (5, 8)
    grown = reused_buffer(work, "b", (5, 9), torch.float32, torch.device("cpu"))
    assert grown.shape == (5, 9) and work["b"] is grown
    cpu = torch.device("cpu")
    assert reused_buffer(work, "b", (5, 9), torch.float64, cpu).dtype == torch.float64


def test_project_refuses_to_centre_a_kept_y_in_place():
    X, Y = make_problem(12, 5, 4, seed=6)
    decomp = solve_module.decompose(torch.from_numpy(X), fit_intercept=True)
    Yt = torch.from_numpy(Y.copy())
    with pytest.raises(ValueError, match="raw Y is kept"):
        solve_module.project(decomp, Yt, keep_y=True, out=Yt)
    proj = solve_module.project(decomp, Yt, out=Yt)  # in place when the raw Y is not kept
    assert proj.Yc.data_ptr() == Yt.data_ptr()
    assert_allclose(Yt.numpy(), Y - Y.mean(axis=0))


@pytest.mark.parametrize("kind", ["numpy", "memmap", "torch"])
@pytest.mark.parametrize("cv", [None, "gcv", 3])
def test_chunks_reuse_one_target_buffer_and_leave_y_alone(tmp_path, monkeypatch, kind, cv):
    """Every chunk is centred in the same buffer (the narrower last one too), the
    caller's Y is never written, and the results are those of one chunk."""
    X, Y = make_problem(20, 30, 23, seed=7, dtype=np.float32)
    Y_in = {"numpy": Y.copy(), "torch": torch.from_numpy(Y.copy())}.get(kind)
    if kind == "memmap":
        np.save(tmp_path / "Y.npy", Y)
        Y_in = np.load(tmp_path / "Y.npy", mmap_mode="r")
    ref = ridge_cv(X, Y, ALPHAS, alpha_per_target=True, cv=cv, target_chunk="all")
    real, centred = solve_module.project, []

    def spy(decomp, Yc, **kw):
        proj = real(decomp, Yc, **kw)
        centred.append(proj.Yc.data_ptr())
        return proj

    monkeypatch.setattr(solve_module, "project", spy)
    got = ridge_cv(X, Y_in, ALPHAS, alpha_per_target=True, cv=cv, target_chunk=7)
    assert len(centred) == 4  # widths 7, 7, 7, 2
    if cv != 3:  # (with folds the default score, r2, keeps the raw targets apart)
        assert len(set(centred)) == 1
    assert_array_equal(np.asarray(Y_in), Y)
    assert_array_equal(got.alpha_index, ref.alpha_index)
    assert_allclose(got.coef, ref.coef, rtol=1e-5, atol=1e-6)
    assert_allclose(got.intercept, ref.intercept, rtol=1e-5, atol=1e-6)


def test_release_free_heap_runs():
    from fastridge._backend import release_free_heap

    release_free_heap()  # glibc: hands free heap pages back; elsewhere a no-op


@pytest.mark.parametrize(
    "layout", ["2d", "3d", "rows_view", "float64_file", "fortran", "fancy_3d_transposed"]
)
def test_memmap_chunks_read_in_the_background_are_the_columns(tmp_path, layout):
    """A memory-mapped Y: row-by-row positioned reads (C-contiguous views of the
    file, any offset), the mapping otherwise; in a background thread on prefetch,
    returned for the slice asked, into `out` or handed over, never for another
    slice; the same chunks as reading the array itself."""
    import threading

    from fastridge._chunks import RowReader, TargetReader

    rng = np.random.default_rng(1)
    dtype = np.float64 if layout == "float64_file" else np.float32
    full = rng.standard_normal((9, 4, 6)).astype(dtype)
    order = "F" if layout == "fortran" else "C"
    np.save(tmp_path / "Y.npy", full.reshape(9, 24) if layout != "3d" else full)
    if order == "F":
        np.save(tmp_path / "Y.npy", np.asfortranarray(full.reshape(9, 24)))
    Y = np.load(tmp_path / "Y.npy", mmap_mode="r")
    if layout == "rows_view":
        Y = Y[3:]
    if layout == "fancy_3d_transposed":
        np.save(tmp_path / "Y.npy", full)
        Y = np.load(tmp_path / "Y.npy", mmap_mode="r").transpose(0, 2, 1)
    ref = np.array(Y).reshape(Y.shape[0], -1).astype(np.float32)
    reader = TargetReader(Y, torch.device("cpu"), torch.float32)
    assert reader.in_background and reader.read_ahead
    positioned = layout in ("2d", "3d", "rows_view", "float64_file")
    assert (reader._rows is not None) == positioned
    threads = []
    if positioned:
        real = RowReader.read_into

        def spy(self, sl, out):
            threads.append(threading.current_thread().name)
            return real(self, sl, out)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(RowReader, "read_into", spy)
            _read_all(reader, ref)
        assert any(name.startswith("fastridge-read") for name in threads)
        assert threading.main_thread().name in threads  # the first chunk, and `out`-less reads
    else:
        _read_all(reader, ref)
    reader.close()
    reader.close()  # idempotent


def _read_all(reader, ref):
    out = torch.empty(ref.shape[0], 5)
    bounds = [slice(0, 5), slice(5, 10), slice(10, 15), slice(15, 20)]
    got = reader.read(bounds[0], out)
    assert_array_equal(got.numpy(), ref[:, 0:5])
    reader.prefetch(bounds[1])
    reader.prefetch(bounds[1])  # already under way: not read twice
    got = reader.read(bounds[1], out)
    assert got.data_ptr() == out.data_ptr()
    assert_array_equal(out.numpy(), ref[:, 5:10])
    reader.prefetch(bounds[2])  # not the slice read next: dropped, not returned
    assert_array_equal(reader.read(bounds[3]).numpy(), ref[:, 15:20])
    reader.prefetch(slice(20, 24))
    handed = reader.read(slice(20, 24))  # no `out`: the background buffer itself
    assert_array_equal(handed.numpy(), ref[:, 20:24])
    reader.prefetch(bounds[0])
    reader.drop_prefetch()
    assert reader._pending is None
    assert_array_equal(handed.numpy(), ref[:, 20:24])  # a handed-over buffer is not reused


def test_truncated_targets_file_is_a_clear_error(tmp_path):
    from fastridge._chunks import TargetReader

    np.save(tmp_path / "Y.npy", np.ones((50, 40), dtype=np.float32))
    Y = np.load(tmp_path / "Y.npy", mmap_mode="r")
    reader = TargetReader(Y, torch.device("cpu"), torch.float32)
    with open(tmp_path / "Y.npy", "r+b") as f:
        f.truncate(128 + 40 * 4 * 30)  # rows 30-49 are gone
    reader.prefetch(slice(0, 8))
    with pytest.raises(OSError, match="short read of row 30"):
        reader.read(slice(0, 8), torch.empty(50, 8))
    with pytest.raises(OSError, match="short read of row 30"):
        reader.read(slice(8, 16), torch.empty(50, 8))
    reader.close()


@pytest.mark.parametrize("solution", ["primal", "dual"])
def test_memmapped_targets_read_in_the_background_fit_the_same(tmp_path, solution):
    X, Y = make_problem(40, 30, 57, seed=5, dtype=np.float32)
    np.save(tmp_path / "Y.npy", Y)
    Ym = np.load(tmp_path / "Y.npy", mmap_mode="r")
    kw = dict(alpha_per_target=True, target_chunk=8, solution=solution)
    want = ridge_cv(X, Y, ALPHAS, **kw)
    got = ridge_cv(X, Ym, ALPHAS, **kw)
    assert_array_equal(got.alpha_index, want.alpha_index)
    assert_array_equal(got.coef, want.coef)
    assert_array_equal(got.intercept, want.intercept)
