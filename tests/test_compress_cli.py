"""lorainne compress: .safetensors in and out, statistics from .npz, the printed report."""

import numpy as np
import pytest

from lorainne.cli import main
from lorainne.compress import ActivationStats, save_stats

safetensors_numpy = pytest.importorskip("safetensors.numpy")


def test_compress_command_round_trip(tmp_path, capsys, rng):
    low = (rng.standard_normal((48, 6)) @ rng.standard_normal((6, 40))).astype(np.float32)
    tensors = {
        "fc1.weight": low,
        "fc2.weight": rng.standard_normal((40, 48)).astype(np.float32),
        "fc1.bias": np.zeros(48, np.float32),
    }
    safetensors_numpy.save_file(tensors, tmp_path / "model.safetensors")
    stats = {
        name: ActivationStats().update(rng.standard_normal((300, W.shape[1])))
        for name, W in tensors.items()
        if W.ndim == 2
    }
    save_stats(tmp_path / "stats.npz", stats)
    out = tmp_path / "small.safetensors"
    args = [
        "compress",
        str(tmp_path / "model.safetensors"),
        "--budget",
        "0.5",
        "--stats",
        str(tmp_path / "stats.npz"),
        "-o",
        str(out),
        "-q",
    ]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "fc1.weight" in text and "total" in text and "svd-llm" in text
    small = safetensors_numpy.load_file(out)
    np.testing.assert_array_equal(small["fc1.bias"], tensors["fc1.bias"])
    assert small["fc1.weight.A"].dtype == np.float32 and small["fc1.weight.A"].shape[1] >= 6
    np.testing.assert_allclose(small["fc1.weight.A"] @ small["fc1.weight.B"], low, atol=1e-4)
    n_after = sum(v.size for k, v in small.items() if k.startswith(("fc1.weight", "fc2.weight")))
    assert n_after <= 0.5 * (low.size + tensors["fc2.weight"].size)


def test_compress_command_errors(tmp_path, capsys, rng):
    safetensors_numpy.save_file({"w": rng.standard_normal((8, 8))}, tmp_path / "m.safetensors")
    assert main(["compress", str(tmp_path / "m.safetensors"), "--budget", "-1", "-q"]) == 2
    assert "budget must be a nonnegative" in capsys.readouterr().err
    assert main(["compress", str(tmp_path / "m.safetensors"), "--budget", "0.5", "--method", "svd-llm", "-q"]) == 2
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(SystemExit, match="cannot read"):
        main(["compress", str(tmp_path / "bad.safetensors"), "--budget", "0.5"])
    with pytest.raises(SystemExit, match="no such file"):
        main(["compress", str(tmp_path / "none.safetensors"), "--budget", "0.5"])
