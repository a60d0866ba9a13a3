"""The CLI on bad files and options: a one-line error, exit code 2, no traceback, nothing
computed first and nothing overwritten.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import lorainne
from lorainne.cli import main

PYTHON_DIR = str(Path(lorainne.__file__).resolve().parents[1])  # the lorainne this test runs (built, installed)


def run_cli(argv, capsys):
    """(exit code, stdout, stderr) of ``lorainne ARGV``, whether it returns or raises SystemExit."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *words):
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0]


@pytest.fixture
def tensor_file(tmp_path):
    path = tmp_path / "X.npy"
    np.save(path, np.random.default_rng(0).random((4, 3, 2)))
    return path


@pytest.mark.parametrize(
    "command",
    [
        ["svd", "{input}", "--rank", "2"],
        ["cp", "{input}", "--rank", "2"],
        ["tucker", "{input}", "--rank", "2"],
        ["ot", "{input}", "{input}", "--eps", "1"],
    ],
)
def test_output_equal_to_the_input_is_refused(tmp_path, capsys, command):
    path = tmp_path / "X.npz"
    np.savez(path, np.random.default_rng(0).random((5, 4, 3) if command[0] in ("cp", "tucker") else (6, 2)))
    before = path.read_bytes()
    for spelling in (path, tmp_path / "sub" / ".." / "X.npz"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        argv = [str(path) if a == "{input}" else a for a in command]
        code, _, err = run_cli([*argv, "-o", spelling, "-q"], capsys)
        assert_one_line_error(code, err, "is the input file")
    assert path.read_bytes() == before


@pytest.mark.parametrize("command", ["svd", "cp", "tucker"])
def test_output_without_the_npz_suffix_is_refused(tmp_path, capsys, tensor_file, command):
    out = tmp_path / "out.npy"
    code, _, err = run_cli([command, tensor_file, "--rank", "2", "-o", out, "-q"], capsys)
    assert_one_line_error(code, err, "must end in .npz")
    assert sorted(os.listdir(tmp_path)) == ["X.npy"]


def test_output_is_written_exactly_where_it_says(tmp_path, capsys, tensor_file):
    out = tmp_path / "model.npz"
    code, printed, _ = run_cli(["cp", tensor_file, "--rank", "2", "-o", out, "-q"], capsys)
    assert code == 0 and f"to {out}" in printed
    assert sorted(os.listdir(tmp_path)) == ["X.npy", "model.npz"]  # no temporary file left


@pytest.mark.parametrize("command", ["cp", "tucker"])
def test_n_iter_max_zero_is_a_one_line_error(capsys, tensor_file, command):
    code, _, err = run_cli([command, tensor_file, "--rank", "2", "--n-iter-max", "0", "-q"], capsys)
    assert_one_line_error(code, err, "--n-iter-max")


@pytest.mark.parametrize("command", ["svd", "cp", "tucker", "density"])
def test_missing_output_directory_is_found_before_computing(tmp_path, capsys, monkeypatch, command):
    path = tmp_path / "A.npy"
    np.save(path, np.eye(4)[:, :, None] if command in ("cp", "tucker") else np.eye(4))
    for name in ("randomized_svd", "cp", "tucker", "spectral_density", "spectrum_bounds"):
        monkeypatch.setattr(lorainne, name, lambda *a, **k: pytest.fail("computed before checking -o"))
    rank = [] if command == "density" else ["--rank", "2"]
    sigma = ["--sigma", "0.1"] if command == "density" else []
    out = tmp_path / "missing" / ("d.csv" if command == "density" else "out.npz")
    code, _, err = run_cli([command, path, *rank, *sigma, "-o", out, "-q"], capsys)
    assert_one_line_error(code, err, "does not exist")
    code, _, err = run_cli([command, path, *rank, *sigma, "-o", tmp_path, "-q"], capsys)
    assert_one_line_error(code, err, "is a directory")


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.npy"
    np.save(good, np.random.default_rng(0).random((4, 3, 2)))
    data = good.read_bytes()
    files = {}
    files["directory"] = tmp_path / "dir.npy"
    files["directory"].mkdir()
    files["empty"] = tmp_path / "empty.npy"
    files["empty"].write_bytes(b"")
    files["truncated"] = tmp_path / "truncated.npy"
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["header"] = tmp_path / "header.npy"
    files["header"].write_bytes(b"\x93NUMPY\x01\x00\x10\x00{garbage      }\n" + b"0" * 64)
    files["not_zip"] = tmp_path / "not_zip.npz"
    files["not_zip"].write_bytes(b"PK\x03\x04" + bytes(range(200)))
    zipped = tmp_path / "zipped.npz"
    np.savez(zipped, np.ones((3, 3, 3)))
    files["truncated_npz"] = tmp_path / "truncated_npz.npz"
    files["truncated_npz"].write_bytes(zipped.read_bytes()[:-40])
    files["sparse"] = tmp_path / "sparse.npz"
    sp.save_npz(files["sparse"], sp.random(6, 5, density=0.4, format="csr", random_state=0))
    files["suffix"] = tmp_path / "data.txt"
    files["suffix"].write_text("1 2 3")
    return files


CASES = ["directory", "empty", "truncated", "header", "not_zip", "truncated_npz", "sparse", "suffix"]


COMMANDS = {"cp": ["--rank", "2", "-q"], "svd": ["--rank", "2", "-q"], "trace": []}


@pytest.mark.parametrize(
    ("case", "command"),
    [(case, command) for case in CASES for command in COMMANDS if case != "sparse" or command == "cp"],
)  # svd and trace take SciPy sparse matrices
def test_unreadable_input_files_are_one_line_errors(tmp_path, capsys, case, command):
    path = _bad_files(tmp_path)[case]
    code, _, err = run_cli([command, path, *COMMANDS[command]], capsys)
    assert_one_line_error(code, err, path.name)


def test_sparse_npz_to_cp_says_what_to_pass(tmp_path, capsys):
    path = _bad_files(tmp_path)["sparse"]
    code, _, err = run_cli(["cp", path, "--rank", "2", "-q"], capsys)
    assert_one_line_error(code, err, "sparse matrix", "dense array")


@pytest.mark.parametrize(
    "call",
    [
        lambda S: lorainne.cp(S, 2),
        lambda S: lorainne.tucker(S, 2),
        lambda S: lorainne.householder_qr(S),
        lambda S: lorainne.cholesky_qr2(S),
    ],
)
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_scipy_sparse_where_dense_is_needed_says_what_to_pass(call, fmt):
    S = sp.random(10, 6, density=0.5, format=fmt, random_state=0)
    with pytest.raises(TypeError, match=r"SciPy sparse .*toarray\(\)"):
        call(S)


def test_python_dash_m_lorainne(tmp_path):
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
    ok = subprocess.run(
        [sys.executable, "-m", "lorainne", "--help"], capture_output=True, text=True, timeout=120, env=env
    )
    assert ok.returncode == 0 and "usage: lorainne" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "lorainne", "cp", str(tmp_path / "missing.npy"), "--rank", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"lorainne cp: no such file: {tmp_path / 'missing.npy'}"
