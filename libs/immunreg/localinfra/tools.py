"""Command-line tools the test suite needs, unpacked from Debian's packages.

Unpacked (`apt-get download`, then `dpkg-deb -x` into the state folder) rather than
installed: that needs no root, changes nothing on the machine, and a package such as
`prometheus` does not start a server just because the suite wanted its `promtool`.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from immunreg.localinfra._proc import is_root, log, run
from immunreg.paths import state_dir


def debian_tool(package: str, binary: str) -> Path:
    """`binary` from the machine's PATH, or from Debian's `package`, unpacked once."""
    found = shutil.which(binary)
    if found:
        return Path(found)
    root = state_dir() / "tools" / package
    unpacked = root / "usr" / "bin" / binary
    if unpacked.exists():
        return unpacked
    log(f"unpacking {binary} from Debian's {package} package into {root}")
    with tempfile.TemporaryDirectory() as folder:
        try:
            run(["apt-get", "download", "-q", package], cwd=folder)
        except RuntimeError:
            # A fresh machine may have no package lists yet.
            prefix = [] if is_root() else ["sudo", "-n"]
            run([*prefix, "apt-get", "update", "-q"])
            run(["apt-get", "download", "-q", package], cwd=folder)
        [deb] = Path(folder).glob(f"{package}_*.deb")
        staging = root.with_name(root.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        run(["dpkg-deb", "-x", str(deb), str(staging)])
        shutil.rmtree(root, ignore_errors=True)
        staging.rename(root)
    if not unpacked.exists():
        raise RuntimeError(f"Debian's {package} package has no usr/bin/{binary}")
    return unpacked
