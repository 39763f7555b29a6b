"""Where textgen keeps the user's files, computed at call time from the environment (no imports
beyond the standard library, so every module can ask)."""

from __future__ import annotations

import os
from pathlib import Path


def config_path() -> Path:
    """Where the user config file is looked for (it need not exist): ``$TEXTGEN_CONFIG``, else
    ``$XDG_CONFIG_HOME/textgen/config.toml`` (``~/.config/textgen/config.toml``)."""
    explicit = os.environ.get("TEXTGEN_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "textgen" / "config.toml"
