"""Every docstring example runs; the CLI works on real .npy/.npz files."""

import doctest
import importlib
import pkgutil

import numpy as np
import pytest
import scipy.sparse as sp

import lorainne
from lorainne.cli import main


def _modules():
    for info in pkgutil.walk_packages(lorainne.__path__, prefix="lorainne."):
        if info.name.endswith("_core"):
            continue
        yield info.name


@pytest.mark.parametrize("name", sorted(_modules()))
def test_docstring_examples(name):
    module = importlib.import_module(name)
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert failures == 0


def test_every_public_function_has_a_runnable_example():
    for name in lorainne.__all__:
        obj = getattr(lorainne, name)
        if callable(obj) and not isinstance(obj, type):
            assert ">>>" in (obj.__doc__ or ""), f"{name} has no example"


def test_cli_svd_dense_and_sparse(tmp_path, capsys):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((120, 8)) @ rng.standard_normal((8, 90))
    np.save(tmp_path / "A.npy", A)
    assert main(["svd", str(tmp_path / "A.npy"), "--rank", "8", "-o", str(tmp_path / "out.npz"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "relative error" in out
    error = float(out.split("relative error ")[1].split(",")[0])
    assert error < 1e-10
    with np.load(tmp_path / "out.npz") as result:
        assert np.allclose((result["U"] * result["S"]) @ result["Vt"], A)
    sp.save_npz(tmp_path / "S.npz", sp.csr_matrix(A))
    assert main(["svd", str(tmp_path / "S.npz"), "--rank", "8", "-q"]) == 0
    assert "relative error" in capsys.readouterr().out


def test_cli_reports_bad_input_without_a_traceback(tmp_path, capsys):
    np.save(tmp_path / "A.npy", np.ones((5, 4)))
    assert main(["svd", str(tmp_path / "A.npy"), "--rank", "9", "-q"]) == 2
    assert "rank" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["svd", str(tmp_path / "missing.npy"), "--rank", "2"])


def test_cli_help_for_every_command(capsys):
    for command in ([], ["demo"], ["svd"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*command, "--help"])
        assert exit_info.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_cli_demo_prints_a_row_per_capability(capsys):
    assert main(["demo", "-q"]) == 0
    table = capsys.readouterr().out
    for name in ("randomized_svd", "range_finder", "householder_qr", "cholesky_qr2"):
        assert name in table
    for name in ("svd_certified", "parafac2", "complete", "compress svd-llm", "GaLore refresh"):
        assert name in table


def test_readme_tour_runs():
    from pathlib import Path

    readme = Path(__file__).resolve().parents[1] / "README.md"
    if not readme.exists():
        pytest.skip("README.md not next to the tests")
    failures, attempted = doctest.testfile(str(readme), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert attempted > 5 and failures == 0


def test_core_stubs_match_the_compiled_module():
    stubtest = pytest.importorskip("mypy.stubtest")
    from pathlib import Path

    allowlist = str(Path(__file__).with_name("stubtest_allowlist.txt"))
    assert stubtest.test_stubs(stubtest.parse_options(["lorainne._core", "--allowlist", allowlist])) == 0


def test_demo_rows_of_the_new_areas_hold_their_claims():
    """The rows `lorainne demo` prints for the areas added after the first four are right."""
    import numpy as np

    from lorainne._demo_areas import SECTIONS

    rows = [row for section in SECTIONS for row in section(np.random.default_rng(0))]
    text = {row.capability: row.accuracy for row in rows}
    error, bound = text["svd_certified"].split("error ")[1].split(" <= bound ")
    assert float(error) <= float(bound)
    assert float(text["compress svd-llm"].split("data error ")[1].split("x")[0]) < 1.0
    assert float(text["complete"].split("error ")[1].split(",")[0]) < 1e-6
    assert float(text["GaLore refresh"].split("angle) ")[1]) < 0.1
    assert float(text["parafac2"].split("err/noise ")[1].split(",")[0]) < 1.05  # fitted to the noise level
    error, fms = text["cmtf"].split("rel. error ")[1].split(", FMS ")
    assert float(error) < 1e-6 and float(fms) > 0.99
    assert float(text["paratuck2"].split("rel. error ")[1].split(",")[0]) < 1e-8  # the lifting is exact
    assert float(text["block_term"].split("rel. error ")[1]) < 1e-6
    assert float(text["dedicom"].split("rel. error ")[1]) < 1e-6
    assert float(text["decouple"].split("new u ")[1]) < 1e-8
