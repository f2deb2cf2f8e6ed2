"""Result folders that are complete or absent, never half written.

:func:`write_folder` writes every file into a hidden sibling folder, then a ``manifest.json``
listing each file's size and SHA-256 (written last), and only then renames the sibling into
place. An older folder of the same name is replaced only once the new one is complete (and
only if it holds nothing but result files). An interrupted or failed save therefore leaves the
old complete folder, or nothing; a hidden ``.NAME.partial-PID-…`` sibling may remain after a
kill that gives no chance to clean up (SIGKILL, power loss), and the next save removes it.

:func:`read_manifest` checks a folder against its manifest and names what is missing or
damaged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

MANIFEST = "manifest.json"
MANIFEST_KIND = "p2p_teach result"
MANIFEST_VERSION = 1
_PARTIAL = ".partial-"
_OLD = ".old-"

Writer = Callable[[Path], object]  # writes one file at the path it is given
_INSTALLING = threading.Lock()


class IncompleteResultError(ValueError):
    """A result folder that is not complete: missing, truncated or changed files."""


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot sync a folder
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_siblings(folder: Path) -> None:
    """Remove hidden partial/old siblings of ``folder`` left by processes no longer running,
    and old copies this process left (a signal that arrived right after a swap)."""
    with _INSTALLING:  # no swap of this process is under way: its old copies are leftovers
        for marker in (_PARTIAL, _OLD):
            for path in folder.parent.glob(f".{folder.name}{marker}*"):
                pid_text = path.name.removeprefix(f".{folder.name}{marker}").split("-", 1)[0]
                if not pid_text.isdigit():
                    continue
                own_old = marker == _OLD and int(pid_text) == os.getpid()
                if own_old or not _pid_alive(int(pid_text)):
                    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while the block runs (the two renames that swap an old
    folder for the new one); they are delivered right after it."""
    held = {signal.SIGINT, signal.SIGTERM}
    if not hasattr(signal, "pthread_sigmask"):  # Windows: nothing to hold
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def check_replaceable(folder: Path, known: set[str]) -> None:
    """An existing ``folder`` may be replaced only when it holds nothing but result files."""
    if not folder.exists() and not folder.is_symlink():
        return
    if not folder.is_dir():
        raise FileExistsError(
            f"{folder} exists and is not a folder. Fix: save to another path, or move it away."
        )
    others = sorted(p.name for p in folder.iterdir() if p.name not in known | {MANIFEST})
    if others:
        raise FileExistsError(
            f"{folder} holds files that are not part of a saved result ({', '.join(others[:5])}"
            f"{', …' if len(others) > 5 else ''}); saving would replace the folder and lose "
            "them. Fix: save to a new folder, or move those files away."
        )


def write_folder(
    folder: str | Path, writers: Mapping[str, Writer], *, replaceable: set[str]
) -> Path:
    """Write ``writers`` (file name → function writing that file) as the folder ``folder``.

    Args:
        folder: the result folder; its parent is created if missing.
        writers: the files, in writing order; each writer gets the path to write.
        replaceable: file names an existing ``folder`` may hold and still be replaced.

    Returns:
        ``folder``. Files are readable like the PNGs (the mode the umask gives new files).

    Raises:
        FileExistsError: ``folder`` is a file, or holds files that are not result files.
        OSError: the parent cannot be written; nothing was changed.
    """
    folder = Path(folder).expanduser()
    if folder.is_symlink() and folder.is_dir():
        folder = folder.resolve()  # a link to a folder: the folder it points to is replaced
    names = list(writers)
    if MANIFEST in names or any(Path(name).name != name or not name for name in names):
        raise ValueError(f"file names must be plain names other than {MANIFEST}: {names}")
    check_replaceable(folder, set(replaceable) | set(names))
    made = _make_parents(folder.parent)
    _remove_stale_siblings(folder)
    token = f"{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}"
    partial = folder.parent / f".{folder.name}{_PARTIAL}{token}"
    try:
        partial.mkdir()
        mode = None
        entries: dict[str, dict] = {}
        for name in names:
            path = partial / name
            writers[name](path)
            if not path.is_file():
                raise OSError(f"writing {name} produced no file")
            mode = mode if mode is not None else path.stat().st_mode & 0o777
            os.chmod(path, mode)  # safetensors writes 0600; share like the first (a PNG)
            _fsync(path)
            entries[name] = {"bytes": path.stat().st_size, "sha256": file_digest(path)}
        manifest = {"kind": MANIFEST_KIND, "version": MANIFEST_VERSION, "files": entries}
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2), "utf-8")
        if mode is not None:
            os.chmod(partial / MANIFEST, mode)
        _fsync(partial / MANIFEST)
        _fsync(partial)
        _install(partial, folder, token)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        for parent in made:  # the folders this save made, deepest first, if still empty
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise
    return folder


def _make_parents(parent: Path) -> list[Path]:
    """Create ``parent`` and its missing ancestors; return those created, deepest first."""
    missing = []
    current = parent
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    parent.mkdir(parents=True, exist_ok=True)
    return missing


def _install(partial: Path, folder: Path, token: str) -> None:
    """Rename the complete ``partial`` folder to ``folder``, replacing an old one."""
    old = folder.parent / f".{folder.name}{_OLD}{token}"
    with _INSTALLING, _signals_deferred():  # one swap at a time in this process
        had_old = folder.exists()
        if had_old:
            os.rename(folder, old)
        try:
            os.rename(partial, folder)
        except BaseException:
            if had_old:
                os.rename(old, folder)  # put the old result back
            raise
    _fsync(folder.parent)
    if had_old:
        shutil.rmtree(old, ignore_errors=True)


def read_manifest(folder: Path) -> dict[str, dict] | None:
    """The files a folder's manifest lists (name → bytes, sha256), each checked, or None when
    the folder has no manifest (saved before manifests were written).

    Raises:
        IncompleteResultError: the manifest is unreadable, or a file it lists is missing, has
            another size or another SHA-256; the message names the files.
    """
    path = folder / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text("utf-8"))
        files = manifest["files"]
        if manifest.get("kind") != MANIFEST_KIND or not isinstance(files, dict):
            raise ValueError("not a p2p_teach manifest")
        if manifest.get("version") != MANIFEST_VERSION:
            raise ValueError(f"manifest version {manifest.get('version')!r} is not known")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise IncompleteResultError(
            f"{folder}: its {MANIFEST} cannot be read ({error}). Fix: save the result again."
        ) from error
    missing, damaged = [], []
    for name, entry in files.items():
        file = folder / name
        if Path(name).name != name or not file.is_file():
            missing.append(name)
        elif file.stat().st_size != entry.get("bytes") or file_digest(file) != entry.get("sha256"):
            damaged.append(name)
    if missing or damaged:
        parts = [f"missing: {', '.join(missing)}" if missing else "",
                 f"changed or truncated: {', '.join(damaged)}" if damaged else ""]  # fmt: skip
        raise IncompleteResultError(
            f"{folder} is not a complete result ({'; '.join(p for p in parts if p)}). Fix: "
            "save the result again (result.save(folder)), or rerun the edit."
        )
    return files
