"""The one reader of TOML configuration files (the camera's device.toml, the dock's dock.toml).

Each side checks its own keys; reading and the wording of a file that cannot be used are shared,
so an administrator sees the same one-line error from either daemon.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any


def read_toml(path: str | os.PathLike, error: Callable[..., Exception], missing_hint: str) -> dict[str, Any]:
    """The parsed tables of ``path``. Raises ``error(message, hint...)`` naming the file when it
    is missing, unreadable, not UTF-8 or not TOML."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise error(f"configuration file {path} does not exist", missing_hint) from None
    except OSError as exc:
        raise error(f"cannot read configuration file {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise error(f"{path} is not valid TOML: {exc}") from None
