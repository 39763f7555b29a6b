"""Where textgen keeps the user's files, computed at call time from the environment (no imports
beyond the standard library, so every module can ask)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def config_path() -> Path:
    """Where the user config file is looked for (it need not exist): ``$TEXTGEN_CONFIG``, else
    ``$XDG_CONFIG_HOME/textgen/config.toml`` (``~/.config/textgen/config.toml``)."""
    explicit = os.environ.get("TEXTGEN_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "textgen" / "config.toml"


def replace_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file beside it, then a rename), keeping
    an existing file's permissions; a reader sees the old file or the new one, never half of it.
    ``OSError`` when it cannot be written (the caller names the file in its own message)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".toml", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
