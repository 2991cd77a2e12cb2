"""Development keys for the embedded default.

With no environment, a key is generated once into ``var/keys`` (git-ignored)
so that sessions and signatures survive restarts. Production settings never
call this: they require every key from the environment.
"""

import secrets
import sys
from pathlib import Path


def local_secret(var_dir: Path, name: str, nbytes: int = 48) -> str:
    """Return the development key ``name``, generating it on first use."""
    keys = var_dir / "keys"
    path = keys / name
    if path.exists():
        return path.read_text().strip()
    keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = secrets.token_urlsafe(nbytes)
    path.write_text(value)
    path.chmod(0o600)
    sys.stderr.write(
        f"kreo: generated development key {name} in {path}; "
        "production settings require it from the environment.\n"
    )
    return value
