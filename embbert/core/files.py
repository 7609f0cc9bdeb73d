"""Writing files so that nothing is ever half-written: temporary file in the same folder, fsync, rename.

Whole output folders (`embbert export`, `embbert tokenizer train`) go through
`check_output_folder` (ours, empty or `--force`; never someone else's data) and
`write_folder` (built aside, swapped in with one rename, the folder's mode kept).
"""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Callable

from .errors import UsageError


def current_umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def public_mode(path: str | os.PathLike) -> None:
    """Give a file or folder made by mkstemp/mkdtemp (0600/0700) the mode the umask allows (0644/0755 under 022)."""
    base = 0o777 if os.path.isdir(path) else 0o666
    os.chmod(path, base & ~current_umask())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename: never half-written.

    The file gets the mode a plain open() would give it under the user's umask.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        public_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# --------------------------------------------------------------------------
# Output folders: ours or empty, replaced whole, mode kept
# --------------------------------------------------------------------------
def _cwd() -> Path | None:
    try:
        return Path.cwd().resolve()
    except OSError:  # the working directory was removed
        return None


def holds_cwd(path: str | os.PathLike) -> bool:
    """True when `path` is the working directory or one of its ancestors (replacing it would remove the cwd)."""
    cwd, path = _cwd(), Path(path).resolve()
    return cwd is not None and (cwd == path or path in cwd.parents)


def output_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """An output folder: absent, or an existing directory (never a file)."""
    if not str(path).strip():
        raise UsageError(f"{flag}: empty path")
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{p}: {flag}: exists and is not a directory")
    parent = p.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{p}: {flag}: cannot create it ({parent} is not a writable directory)")
    return p


def check_output_folder(out: str | os.PathLike, is_ours: Callable[[Path], bool], command: str,
                        force: bool = False, flag: str = "--out") -> Path:
    """The absolute (resolved) path of an output folder the command may write, else a `UsageError` (exit 2).

    Allowed: a folder that does not exist yet, an empty one, or one `is_ours` recognises
    (by the manifest `command` writes); anything else only with `force`. An existing folder
    must be writable by the user (a read-only folder is not silently replaced).
    """
    output_dir(out, flag)  # an empty path, a file, no writable parent
    path = Path(out).resolve()
    if not path.is_dir():
        return path
    try:
        entries = sorted(os.listdir(path))
    except OSError as exc:
        raise UsageError(f"{path}: {flag}: cannot read the folder ({exc.strerror})") from None
    if entries and not force and not is_ours(path):
        shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
        where = " (the working directory)" if path == _cwd() else (
            " (it contains the working directory)" if holds_cwd(path) else "")
        raise UsageError(f"{path}: {flag}: folder{where} holds files not written by `{command}` ({shown}); "
                         "choose a new or empty folder, or pass --force to replace its contents")
    if not os.access(path, os.W_OK | os.X_OK):
        mode = stat.S_IMODE(path.stat().st_mode)
        raise UsageError(f"{path}: {flag}: folder is not writable (mode {mode:04o}); "
                         "make it writable (chmod u+w) or choose another folder")
    return path


def fsync_dir(path: str | os.PathLike) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # a platform that cannot open folders (Windows): nothing to sync
        return
    try:
        os.fsync(fd)
    except OSError:  # a file system without folder fsync
        pass
    finally:
        os.close(fd)


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    """Files with the user's umask (open(2) mode 0666, mkdir 0777), each fsynced, then every folder."""
    dirs = {root}
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(root).parents:
            dirs.add(root / parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(d)


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    import ctypes
    import errno

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except Exception:  # noqa: BLE001 - no libc with renameat2 (macOS, Windows, old glibc): two renames
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(out: Path, tmp_prefix: str) -> None:
    """Remove `<tmp_prefix><name>-<pid>-*` siblings of `out` left by a killed process."""
    prefix = f"{tmp_prefix}{out.name}-"
    for p in out.parent.iterdir():
        if not p.name.startswith(prefix):
            continue
        pid = p.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def _fill_in_place(out: Path, files: dict[str, bytes]) -> None:
    """The working directory (or an ancestor) cannot be swapped without removing it from under the
    user's shell: write each file atomically in order (the manifest, last in `files`, last), then
    remove what the new set does not hold, never a folder on the way to the working directory."""
    for rel, data in files.items():
        atomic_write_bytes(out / rel, data)
    keep = {Path(rel) for rel in files}
    keep_dirs = {p for rel in keep for p in rel.parents}
    cwd = _cwd()
    for dirpath, dirnames, filenames in os.walk(out, topdown=False):
        d = Path(dirpath)
        for name in filenames + [n for n in dirnames if (d / n).is_symlink()]:
            if (d / name).relative_to(out) not in keep:
                os.unlink(d / name)
        for name in dirnames:
            p = d / name
            if p.is_symlink() or p.relative_to(out) in keep_dirs or (cwd and (p == cwd or p in cwd.parents)):
                continue
            shutil.rmtree(p, ignore_errors=True)
    fsync_dir(out)


def write_folder(out: str | os.PathLike, files: dict[str, bytes], tmp_prefix: str) -> list[Path]:
    """Make folder `out` hold exactly `files` (relative path -> bytes), never half-written.

    Built in a temporary sibling `<tmp_prefix><name>-<pid>-<random>` (created 0777 less the
    umask), every file and folder fsynced, then swapped in with one rename (renameat2
    RENAME_EXCHANGE; two renames where the file system lacks it). An existing folder's mode
    is kept. Where `out` is or holds the working directory it is filled in place instead
    (each file atomic). The caller has checked the folder (`check_output_folder`).
    """
    out = Path(out).resolve()
    if out.is_dir() and holds_cwd(out):
        _fill_in_place(out, files)
        return [out / rel for rel in files]
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(out, tmp_prefix)
    tmp = out.parent / f"{tmp_prefix}{out.name}-{os.getpid()}-{os.urandom(4).hex()}"
    os.mkdir(tmp)  # 0777 & ~umask, unlike mkdtemp's 0700
    try:
        _write_tree(tmp, files)
        if out.exists():
            os.chmod(tmp, stat.S_IMODE(out.stat().st_mode))  # keep the folder's permissions
            if not exchange(tmp, out):  # no atomic swap here: two renames
                old = tmp.with_name(tmp.name + "-old")
                os.rename(out, old)
                os.rename(tmp, out)
                tmp = old
        else:
            os.rename(tmp, out)
        fsync_dir(out.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return [out / rel for rel in files]


def remove_named(folder: Path, names) -> None:
    """Remove FOLDER/<name> for each of NAMES (files or folders), and nothing else: `--force` on a run
    folder (the names a run writes, `embbert.core.layout.RUN_FILES`) keeps the files beside them."""
    for name in names:
        p = Path(folder) / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
