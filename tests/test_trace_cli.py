"""The trace / density commands and the demo rows."""

import numpy as np
import pytest
import scipy.sparse as sp

from lorainne.cli import main


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.standard_normal((200, 200)))
    dense = tmp_path / "A.npy"
    np.save(dense, (U * 0.9 ** np.arange(200)) @ U.T)
    k = 20
    L1 = sp.diags([-np.ones(k - 1), 2 * np.ones(k), -np.ones(k - 1)], [-1, 0, 1])
    sparse = tmp_path / "L.npz"
    sp.save_npz(sparse, (sp.kron(L1, sp.eye(k)) + sp.kron(sp.eye(k), L1) + sp.eye(k * k)).tocsr())
    return dense, sparse


def test_trace_command(files, capsys):
    dense, sparse = files
    assert main(["trace", str(dense), "--matvecs", "60", "--psd"]) == 0
    out = capsys.readouterr().out
    value = float(out.split(":")[1].split("+-")[0])
    assert value == pytest.approx((1 - 0.9**200) / 0.1, rel=1e-2)
    assert main(["trace", str(sparse), "--function", "log", "--vectors", "10", "--degree", "10"]) == 0
    assert "tr log(A) by slq" in capsys.readouterr().out


def test_density_command_png_and_csv(files, tmp_path, capsys):
    _, sparse = files
    csv = tmp_path / "d.csv"
    assert main(["density", str(sparse), "--sigma", "0.2", "--vectors", "10", "-o", str(csv), "-q"]) == 0
    data = np.loadtxt(csv, delimiter=",", skiprows=1)
    assert data.shape == (500, 2)
    assert np.trapezoid(data[:, 1], data[:, 0]) == pytest.approx(1.0, abs=0.05)
    pytest.importorskip("matplotlib")
    png = tmp_path / "d.png"
    assert (
        main(["density", str(sparse), "--sigma", "0.2", "--vectors", "10", "--method", "kpm", "-o", str(png), "-q"])
        == 0
    )
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_trace_command_bad_input(tmp_path, capsys):
    path = tmp_path / "R.npy"
    np.save(path, np.ones((3, 4)))
    assert main(["trace", str(path), "--matvecs", "2"]) == 2
    assert "square" in capsys.readouterr().err


def test_demo_rows():
    from lorainne._demo import trace_rows

    rows = trace_rows(np.random.default_rng(0))
    assert len(rows) == 8
    assert all(r.seconds >= 0 for r in rows)
