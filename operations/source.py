"""The AGPL source offer: a tarball of the code this deployment runs.

Every page's footer links the source. With `BUSANPAY_SOURCE_URL` set it links there;
otherwise it links `/source`, which serves the files installed beside `app.py` (the code
that is running, including local changes), so a deployment honours the licence without
an outside repository. Left out: virtualenvs, screenshots under docs/screens, the instance folder (databases, keys,
backups), version control, caches, build output, logs and anything that looks like a
secret (`.env` files, keys and certificates).
"""
from __future__ import annotations

import fnmatch
import gzip
import io
import os
import tarfile
import threading
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".venv", "venv", "instance", ".git", "__pycache__", ".pytest_cache",
             ".hypothesis", "node_modules", "build", "dist", "artifacts", "out"}
SKIP_PATHS = {"docs/screens"}  # screenshots: documentation, not source, and most of the bytes
SKIP_FILES = [".git", "*.pyc", "*.pyo", "*.egg-info", ".env", ".env.*", "*.env", "*.pem", "*.key",
              "*.crt", "*.p12", "*.sqlite3", "*.sqlite3-*", "*.db", "*.backup", "*.log",
              "*.partial", "id_rsa*", "id_ed25519*"]


def source_files(root: Path) -> list[Path]:
    """Regular files under root that belong in the source offer, sorted."""
    found = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder).relative_to(root)
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")
                         and (here / d).as_posix() not in SKIP_PATHS)
        for name in files:
            path = Path(folder) / name
            if path.is_symlink() or not path.is_file():
                continue
            if any(fnmatch.fnmatch(name, pattern) for pattern in SKIP_FILES):
                continue
            found.append(path)
    return sorted(found)


def build_tarball(root: Path, prefix: str = "busanpay") -> bytes:
    buffer = io.BytesIO()
    # Fixed mtime and owner: the same files give the same tarball.
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped:
        with tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in source_files(root):
                info = tar.gettarinfo(str(path), arcname=f"{prefix}/{path.relative_to(root)}")
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
    return buffer.getvalue()


class SourceOffer:
    """Builds the tarball once per process, on first request."""

    def __init__(self, root: Path = PROJECT_ROOT):
        self.root = root
        self._tarball: bytes | None = None
        self._lock = threading.Lock()

    def tarball(self) -> bytes:
        with self._lock:
            if self._tarball is None:
                self._tarball = build_tarball(self.root)
            return self._tarball
