"""Writes settings into the project's `.dlt/config.toml` and `.dlt/secrets.toml`, keeping the
comments and every other key in them (tomlkit, which dlt itself uses for these files)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict

import tomlkit

CONFIG_FILE = "config.toml"
SECRETS_FILE = "secrets.toml"


def write_settings(settings_dir: Path, values: Dict[str, Any], secret: bool) -> Path:
    """Sets dotted keys (`sources.aig_source.account_id`) in config.toml or secrets.toml.

    secrets.toml is created readable by its owner only; it is git-ignored.
    """
    path = settings_dir / (SECRETS_FILE if secret else CONFIG_FILE)
    settings_dir.mkdir(parents=True, exist_ok=True)
    document = tomlkit.parse(path.read_text()) if path.exists() else tomlkit.document()
    for dotted, value in values.items():
        *sections, key = dotted.split(".")
        table: Any = document
        for section in sections:
            if section not in table:
                table[section] = tomlkit.table()
            table = table[section]
        table[key] = value
    if secret and not path.exists():
        path.touch(mode=0o600)
    path.write_text(tomlkit.dumps(document))
    if secret:
        os.chmod(path, 0o600)
    return path
