"""The `lorainne cp` / `lorainne tucker` commands and the demo rows of the tensor area."""

import numpy as np
import pytest

from lorainne import CPTensor, TuckerTensor, parafac2
from lorainne.cli import main


def test_cp_command_writes_factors(tmp_path, rng, capsys):
    true = [rng.standard_normal((n, 3)) for n in (12, 10, 8)]
    X = CPTensor(None, true).to_tensor()
    np.save(tmp_path / "x.npy", X)
    out = tmp_path / "model.npz"
    assert main(["cp", str(tmp_path / "x.npy"), "--rank", "3", "-o", str(out), "-q"]) == 0
    text = capsys.readouterr().out
    assert "CP of 12x10x8 float64 at rank 3" in text and "converged" in text
    with np.load(out) as data:
        model = CPTensor(data["weights"], [data[f"factor_{n}"] for n in range(3)])
    np.testing.assert_allclose(model.to_tensor(), X, atol=1e-6 * np.abs(X).max())


def test_cp_command_with_progress_and_nonnegative(tmp_path, rng, capsys):
    X = np.abs(rng.standard_normal((6, 5, 4)))
    np.save(tmp_path / "x.npy", X)
    assert main(["cp", str(tmp_path / "x.npy"), "--rank", "2", "--nonnegative", "--n-iter-max", "5", "--tol", "0"]) == 0
    captured = capsys.readouterr()
    assert "after 5 sweeps" in captured.out and "cp [" in captured.err


def test_tucker_command(tmp_path, rng, capsys):
    core = rng.standard_normal((3, 2, 2))
    U = [np.linalg.qr(rng.standard_normal((n, r)))[0] for n, r in zip((9, 8, 7), core.shape, strict=False)]
    X = TuckerTensor(core, U).to_tensor()
    np.savez(tmp_path / "x.npz", X)
    out = tmp_path / "t.npz"
    assert main(["tucker", str(tmp_path / "x.npz"), "--rank", "3,2,2", "-o", str(out), "-q"]) == 0
    assert "rank (3, 2, 2)" in capsys.readouterr().out
    with np.load(out) as data:
        model = TuckerTensor(data["core"], [data[f"factor_{n}"] for n in range(3)])
    np.testing.assert_allclose(model.to_tensor(), X, atol=1e-8)


def test_commands_report_bad_input(tmp_path, capsys):
    np.save(tmp_path / "v.npy", np.ones(5))
    assert main(["cp", str(tmp_path / "v.npy"), "--rank", "2", "-q"]) == 2
    assert "at least 2 modes" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["tucker", str(tmp_path / "missing.npy"), "--rank", "2"])


def test_demo_tensor_rows():
    from lorainne._demo import SECTIONS, tensor_rows

    assert tensor_rows in SECTIONS
    rows = tensor_rows(np.random.default_rng(0))
    assert {r.capability for r in rows} >= {"cp", "cp nonnegative", "cp mask", "cp sparse", "tucker", "nmf"}
    cp_row = rows[0]
    ratio = float(cp_row.accuracy.split()[1].rstrip(","))
    assert ratio <= 1.001


def test_parafac2_command_reads_ragged_slices(tmp_path, rng, capsys):
    K, J, R = 6, 7, 2
    A, B, C = rng.uniform(0.5, 1.5, (K, R)), rng.standard_normal((R, R)), rng.standard_normal((J, R))
    sizes = [9, 12, 5, 20, 8, 11]
    P = [np.linalg.qr(rng.standard_normal((n, R)))[0] for n in sizes]
    slices = [P[k] @ B @ np.diag(A[k]) @ C.T for k in range(K)]
    # names that do not sort in the archive's order: the archive's order is the slices' order
    np.savez(tmp_path / "s.npz", **{f"z{9 - k}": s for k, s in enumerate(slices)})
    out = tmp_path / "p2.npz"
    args = ["parafac2", str(tmp_path / "s.npz"), "--rank", "2", "-o", str(out), "-q", "--tol", "0"]
    assert main([*args, "--n-iter-max", "300"]) == 0
    text = capsys.readouterr().out
    assert "PARAFAC2 of 6 slices (5..20 x 7) at rank 2" in text and "6 projections" in text
    with np.load(out) as data:
        weights, A_hat, B_hat, C_hat = data["weights"], data["A"], data["B"], data["C"]
        projections = [data[f"projection_{k}"] for k in range(K)]
    reference = parafac2(slices, 2, tol=0, n_iter_max=300, random_state=0)  # the command's defaults
    norm = np.sqrt(sum((s**2).sum() for s in slices))
    residual = 0.0
    for k, (p, s, r) in enumerate(zip(projections, slices, reference.to_slices(), strict=True)):
        assert p.shape == (sizes[k], R)
        model = p @ B_hat @ np.diag(weights * A_hat[k]) @ C_hat.T
        np.testing.assert_allclose(model, r, atol=1e-12 * norm)
        residual += ((model - s) ** 2).sum()
    assert np.sqrt(residual) / norm == pytest.approx(reference.errors[-1], rel=1e-6)
    assert reference.errors[-1] < 1e-2


def test_parafac2_command_bad_input(tmp_path, rng, capsys):
    np.savez(tmp_path / "s.npz", rng.standard_normal((5, 4)), rng.standard_normal((6, 3)))
    assert main(["parafac2", str(tmp_path / "s.npz"), "--rank", "2", "-q"]) == 2
    assert "same number of columns" in capsys.readouterr().err
    np.savez(tmp_path / "empty.npz")
    with pytest.raises(SystemExit):
        main(["parafac2", str(tmp_path / "empty.npz"), "--rank", "2", "-q"])
    assert "holds no array" in capsys.readouterr().err
    np.save(tmp_path / "x.npy", rng.standard_normal((3, 5, 4)))
    assert main(["parafac2", str(tmp_path / "x.npy"), "--rank", "9", "-q"]) == 2
    assert "rank" in capsys.readouterr().err
