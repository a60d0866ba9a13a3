"""The command line's file handling: reading .npy/.npz inputs, checking and writing outputs atomically,
and the one-line error (``CommandError``) a command exits with when a file or option cannot be used.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

LOADABLE = ("matrix", "dense")


class CommandError(SystemExit):
    """A command's input or output cannot be used: the command prints ``message`` on one line
    and exits with code 2 (as argparse does for a bad option), before computing anything.
    """

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


def load_array(path: str, kind: str = "matrix"):
    """The array stored in a .npy file, or in an .npz file (its first array).

    ``kind`` is what the command expects: ``"matrix"`` (a dense array, or a SciPy sparse matrix
    saved by ``scipy.sparse.save_npz``) or ``"dense"`` (a NumPy array: tensors, point clouds,
    weights). A missing file, a directory, an unknown suffix, an empty, truncated or malformed
    file, an empty .npz or a sparse matrix where a dense array is expected raise
    :class:`CommandError` (a ``SystemExit`` with code 2) with a one-line message; the shape is
    checked by the library function the command calls.
    """
    if kind not in LOADABLE:
        raise ValueError(f"kind must be one of {LOADABLE}, got {kind!r}")
    file = Path(path)
    if not file.exists():
        raise CommandError(f"no such file: {path}")
    if file.is_dir():
        raise CommandError(f"{path} is a directory, not a .npy or .npz file")
    if file.suffix not in (".npy", ".npz"):
        raise CommandError(f"{path}: expected a .npy or .npz file")
    try:  # the file is opened here so that it is closed even when NumPy cannot parse it
        with open(file, "rb") as stream:
            if file.suffix == ".npy":
                return np.load(stream, allow_pickle=False)
            return _load_npz(stream, path, kind)
    except CommandError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
        raise CommandError(f"{path} is not a readable {file.suffix} file: {one_line(error)}") from None


def _load_npz(stream, path: str, kind: str):
    loaded = np.load(stream, allow_pickle=False)
    if isinstance(loaded, np.ndarray):  # a .npy file named .npz
        return loaded
    with loaded as data:
        if "format" in data.files and "shape" in data.files:
            if kind != "matrix":
                raise CommandError(
                    f"{path} holds a sparse matrix; this command needs a dense array "
                    "(save one with np.save, e.g. of matrix.toarray())"
                )
            import scipy.sparse

            stream.seek(0)
            return scipy.sparse.load_npz(stream)
        if not data.files:
            raise CommandError(f"{path} holds no array")
        return data[data.files[0]]


def check_output(
    path: str | None, inputs: list[str | None], suffixes: tuple[str, ...] = (), *, option: str = "-o"
) -> Path | None:
    """The output path of a command, checked before any computation: it must end in one of
    ``suffixes`` (when given), its directory must exist and be writable, it must not be a
    directory, and it must not be one of the ``inputs`` (a command never overwrites its input).
    ``option`` names it in the messages. Raises :class:`CommandError` otherwise.
    """
    if path is None:
        return None
    out = Path(path)
    if out.is_dir():
        raise CommandError(f"{option} {path} is a directory; give a file name")
    if suffixes and out.suffix.lower() not in suffixes:
        raise CommandError(f"{option} {path}: the output file must end in {' or '.join(suffixes)}")
    parent = out.parent
    if not parent.is_dir():
        raise CommandError(f"{option} {path}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise CommandError(f"{option} {path}: the directory {parent} is not writable")
    for source in inputs:
        if source is not None and (
            Path(source).resolve() == out.resolve() or (out.exists() and os.path.samefile(source, out))
        ):
            raise CommandError(f"{option} {path} is the input file {source}; choose another output name")
    return out


def save_npz(path: Path, **arrays) -> None:
    """``np.savez`` to ``path`` exactly (no suffix added), through a temporary file in the same
    directory renamed into place: an interrupted write leaves no half-written output.
    """
    save_atomic(path, lambda stream: np.savez(stream, **arrays))


def save_atomic(path: Path, write) -> None:
    """``write(stream)`` into a temporary file beside ``path``, renamed into place when complete."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "xb") as stream:
            write(stream)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def check_positive(value: int, option: str) -> int:
    """A count option that must be >= 1 (CommandError otherwise)."""
    if value < 1:
        raise CommandError(f"{option} must be >= 1, got {value}")
    return value


def load_slices(path: str) -> list:
    """The arrays of an .npz file in the archive's order (the slices of ``lorainne parafac2``), or
    the slices ``X[k]`` of a 3-D .npy array. Unreadable or empty files raise :class:`CommandError`.
    """
    if Path(path).suffix == ".npy":
        X = load_array(path, "dense")
        return [X[k] for k in range(X.shape[0])] if X.ndim == 3 else [X]
    load_array(path, "dense")  # the same checks of the path and the archive as every command
    try:
        with open(path, "rb") as stream, np.load(stream, allow_pickle=False) as data:
            return [data[name] for name in data.files]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
        raise CommandError(f"{path} is not a readable .npz file: {one_line(error)}") from None


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
