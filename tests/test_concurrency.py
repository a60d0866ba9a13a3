"""Processes and threads around lorainne calls: fork under load, imports on the hot path, Ctrl-C.

Each scenario runs in a fresh interpreter (``subprocess``) with a timeout, so that a deadlock or an
ignored signal fails the test instead of hanging the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import lorainne

PYTHON_DIR = str(Path(lorainne.__file__).resolve().parents[1])  # the lorainne this test runs (built, installed)


def _run(code: str, timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = PYTHON_DIR + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONWARNINGS"] = "ignore"
    try:
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"the subprocess did not finish within {timeout} s: {error.stdout!r} {error.stderr!r}")


def test_public_calls_import_nothing():
    # A module imported inside a call holds an import lock; fork() from another thread at that
    # moment deadlocks the child (1 child in 100 did, in array_api_compat.array_namespace).
    result = _run(
        """
        import sys
        import numpy as np
        import lorainne

        before = set(sys.modules)
        rng = np.random.default_rng(0)
        X, A = rng.random((5, 4, 3)), rng.random((30, 20))
        for backend in ("auto", "numpy"):
            lorainne.cp(X, 2, backend=backend)
            lorainne.tucker(X, 2, backend=backend)
            lorainne.randomized_svd(A, 3, backend=backend)
            lorainne.householder_qr(A, backend=backend)
            lorainne.cholesky_qr2(A, backend=backend)
            lorainne.nmf(A, 2, backend=backend)
            lorainne.sinkhorn(rng.random((10, 2)), rng.random((12, 2)), eps=0.5, backend=backend)
            lorainne.trace(A.T @ A, 10, backend=backend)
        print(sorted(set(sys.modules) - before))
        """,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"modules imported inside public calls: {result.stdout}"


def test_fork_while_another_thread_is_inside_a_call():
    result = _run(
        """
        import os, threading, time
        import numpy as np
        import lorainne

        rng = np.random.default_rng(0)
        X, A = rng.random((6, 5, 4)), rng.random((40, 30))
        stop = threading.Event()

        def load():
            while not stop.is_set():
                lorainne.cp(X, 2, backend="numpy", n_iter_max=3)
                lorainne.randomized_svd(A, 3)

        worker = threading.Thread(target=load, daemon=True)
        worker.start()
        hung = 0
        for i in range(50):
            pid = os.fork()
            if pid == 0:  # child: the same calls, then leave without running Python's shutdown
                lorainne.cp(X, 2, backend="numpy", n_iter_max=3)
                lorainne.randomized_svd(A, 3, n_threads=1)
                os._exit(0)
            deadline = time.monotonic() + 20
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    assert os.waitstatus_to_exitcode(status) == 0, status
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                    hung += 1
                    break
                time.sleep(0.005)
        stop.set()
        worker.join(30)
        print("hung", hung)
        """,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "hung 0"


LONG_CALLS = {
    "sinkhorn dense": """
        x, y = rng.random((1500, 2)), rng.random((1500, 2))
        call = lambda: lorainne.sinkhorn(x, y, eps=1e-4, method="dense", tol=1e-300, n_iter_max=10**9)
    """,
    "sinkhorn hierarchical": """
        x, y = rng.random((3000, 2)), rng.random((3000, 2))
        call = lambda: lorainne.sinkhorn(x, y, eps=1e-3, method="hierarchical", tol=1e-300, n_iter_max=10**9)
    """,
    "sinkhorn matrix": """
        x, y = rng.random((2000, 3)), rng.random((2000, 3))
        call = lambda: lorainne.sinkhorn(x, y, eps=1e-3, method="matrix", tol=1e-300, n_iter_max=10**9)
    """,
    "cp dense": """
        X = rng.random((60, 50, 40))
        call = lambda: lorainne.cp(X, 5, n_iter_max=10**8, tol=0, init="random", random_state=0)
    """,
    "cp sparse": """
        coords = np.stack([rng.integers(0, 300, 200_000) for _ in range(3)], axis=1)
        X = lorainne.SparseTensor(coords, rng.random(200_000), (300, 300, 300))
        call = lambda: lorainne.cp(X, 5, n_iter_max=10**8, tol=0, init="random", random_state=0)
    """,
    "randomized_svd": """
        A = rng.random((600, 500))
        call = lambda: lorainne.randomized_svd(A, 20, n_power_iter=10**8, random_state=0)
    """,
    "trace_function slq": """
        B = rng.random((600, 600)); A = B @ B.T + np.eye(600)
        call = lambda: lorainne.trace_function(A, "log", n_vectors=2000, degree=2000, random_state=0)
    """,
}


@pytest.mark.parametrize("name", sorted(LONG_CALLS))
def test_ctrl_c_interrupts_a_long_kernel(name):
    # SIGINT 1 s into a call that would run for minutes: KeyboardInterrupt within 2 s of it.
    result = _run(
        f"""
        import os, signal, threading, time
        import numpy as np
        import lorainne

        rng = np.random.default_rng(0)
        {textwrap.indent(textwrap.dedent(LONG_CALLS[name]), " " * 8).strip()}
        sent = []
        threading.Timer(1.0, lambda: (sent.append(time.monotonic()), os.kill(os.getpid(), signal.SIGINT))).start()
        try:
            call()
            print("finished without an interrupt")
        except KeyboardInterrupt:
            print(f"interrupted after {{time.monotonic() - sent[0]:.3f}} s")
        """,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    words = result.stdout.split()
    assert words[:2] == ["interrupted", "after"], result.stdout
    assert float(words[2]) < 2.0, result.stdout
