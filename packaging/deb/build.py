#!/usr/bin/env python3
"""build.py - ``make deb``: edgemail_VERSION_all.deb with plain dpkg-deb.

NAME
    packaging/deb/build.py - stage the file tree, write DEBIAN/, dpkg-deb --build

SYNOPSIS
    python3 packaging/deb/build.py [--out DIR] [--wheels DIR] [--pip PIP]

DESCRIPTION
    Why plain dpkg-deb and not dh-python or dh-virtualenv: Debian 12's own
    python3-dnspython (2.3) and python3-pyroute2 (0.7) are older than
    edgemail needs, and pyserial-asyncio-fast and
    sdnotify are not packaged, so the dependencies travel with the package.
    Every one of them is pure Python, so the package is Architecture: all
    and needs no virtualenv bound to one interpreter path (what dh-virtualenv
    builds): they are installed with pip --target into a private directory,
    /usr/lib/edgemail/python, that only edgemail's programs put on sys.path
    (``python3 -IS``: no user site, no PYTHON* variables, and no site
    module: nothing of /usr/lib/python3/dist-packages is needed, and its
    .pth files cost every sendmail/mailq call its start-up; one flag word,
    as the kernel passes a shebang's options as one argument).  The build refuses
    a compiled module, so a dependency that stops being pure Python cannot
    slip into an "all" package.  No debhelper at build time: the whole
    recipe is this file and the maintainer scripts beside it.  With
    --wheels the dependencies (and setuptools for edgemail's own build)
    come from that directory only (``make deb`` fills it once with pip
    download), so building needs no network.

    The tree (DEBIAN/conffiles lists everything under /etc, so dpkg keeps an
    edited file on upgrade and asks):

      /usr/sbin/sendmail, /usr/bin/mailq, /usr/bin/newaliases,
      /usr/bin/edgemail, /usr/sbin/hoststat, /usr/sbin/purgestat
      /usr/lib/edgemail/python/          edgemail, link and the dependencies
      /lib/systemd/system/edgemail.service
      /usr/lib/sysusers.d/edgemail.conf, /usr/lib/tmpfiles.d/edgemail.conf
      /etc/edgemail/{edgemail.toml,dial.policy,aliases}
      /etc/ppp/peers/edgemail, /etc/ppp/ip-{up,down}.d/edgemail
      /usr/share/doc/edgemail/{README.md,copyright,changelog.Debian.gz}

    Like every Debian MTA it Provides, Conflicts with and Replaces
    mail-transport-agent, so installing it removes exim4 or postfix, and the
    sendmail interface (/usr/sbin/sendmail, mailq, newaliases) is its own.

EXIT
    0 and the path of the .deb on stdout; 1 with the reason.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
LIB = "usr/lib/edgemail/python"

#: console script -> (installed path, function in edgemail.cli)
PROGRAMS = {
    "sendmail": ("usr/sbin/sendmail", "sendmail_main"),
    "mailq": ("usr/bin/mailq", "mailq_main"),
    "newaliases": ("usr/bin/newaliases", "sendmail_main"),
    "edgemail": ("usr/bin/edgemail", "edgemail_main"),
    "hoststat": ("usr/sbin/hoststat", "hoststat_main"),
    "purgestat": ("usr/sbin/purgestat", "purgestat_main"),
}
CONFIG = {
    "etc/edgemail.toml": ("etc/edgemail/edgemail.toml", 0o644),     # every user's sendmail reads it:
    "etc/dial.policy": ("etc/edgemail/dial.policy", 0o644),         # secrets live in the files it names
    "etc/aliases": ("etc/edgemail/aliases", 0o644),
    "etc/ppp/peers/edgemail": ("etc/ppp/peers/edgemail", 0o644),
    "etc/ppp/ip-up.d/edgemail": ("etc/ppp/ip-up.d/edgemail", 0o755),
    "etc/ppp/ip-down.d/edgemail": ("etc/ppp/ip-down.d/edgemail", 0o755),
}
SYSTEM = {
    "systemd/edgemail.service": "lib/systemd/system/edgemail.service",
    "systemd/edgemail.sysusers.conf": "usr/lib/sysusers.d/edgemail.conf",
    "systemd/edgemail.tmpfiles.conf": "usr/lib/tmpfiles.d/edgemail.conf",
}

WRAPPER = '''#!/usr/bin/python3 -IS
"""{name}: edgemail's {name} (Debian package edgemail; code in /{lib})."""
import sys
sys.path.insert(0, "/{lib}")
from edgemail.cli import {func}
sys.exit({func}())
'''


class BuildError(Exception):
    pass


def version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def install_python(stage: Path, pip: list[str], wheels: str | None) -> None:
    """edgemail, link and the runtime dependencies into the private directory."""
    target = stage / LIB
    offline = ["--no-index", "--find-links", wheels] if wheels else []
    cmd = [*pip, "install", *offline, "--quiet", "--disable-pip-version-check", "--no-compile",
           "--no-warn-script-location", "--target", str(target), str(ROOT)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise BuildError(f"pip install failed:\n{r.stderr.strip()}")
    shutil.rmtree(target / "bin", ignore_errors=True)          # pip's console scripts: ours are below
    compiled = [p for p in target.rglob("*") if p.suffix in (".so", ".pyd")]
    if compiled:
        raise BuildError(f"compiled modules in an Architecture: all package: {compiled[:3]}")
    for cache in list(target.rglob("__pycache__")):
        shutil.rmtree(cache)
    for info in target.glob("edgemail-*.dist-info"):           # installed from a path: no direct_url
        (info / "direct_url.json").unlink(missing_ok=True)


def install_files(stage: Path) -> None:
    for name, (path, func) in PROGRAMS.items():
        put(stage / path, WRAPPER.format(name=name, lib=LIB, func=func), 0o755)
    for src, (dst, mode) in CONFIG.items():
        put(stage / dst, (ROOT / src).read_text(), mode)
    for src, dst in SYSTEM.items():
        put(stage / dst, (ROOT / src).read_text(), 0o644)
    doc = stage / "usr/share/doc/edgemail"
    put(doc / "README.md", (ROOT / "README.md").read_text(), 0o644)
    put(doc / "copyright", (HERE / "copyright").read_text(), 0o644)
    changelog = (HERE / "changelog").read_text().replace("@VERSION@", version())
    doc.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(doc / "changelog.Debian.gz", "wb", mtime=0) as f:
        f.write(changelog.encode())
    os.chmod(doc / "changelog.Debian.gz", 0o644)


def put(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)


def write_debian(stage: Path) -> None:
    meta = stage / "DEBIAN"
    meta.mkdir()
    size_kb = sum(p.stat().st_size for p in stage.rglob("*") if p.is_file()) // 1024 + 1
    control = (HERE / "control").read_text().replace("@VERSION@", version()).replace("@SIZE@", str(size_kb))
    put(meta / "control", control, 0o644)
    conffiles = sorted("/" + dst for dst, _ in CONFIG.values())
    put(meta / "conffiles", "\n".join(conffiles) + "\n", 0o644)
    for script in ("postinst", "prerm", "postrm"):
        put(meta / script, (HERE / script).read_text(), 0o755)
    sums = []
    for p in sorted(stage.rglob("*")):
        if p.is_file() and not p.is_relative_to(meta):
            sums.append(f"{hashlib.md5(p.read_bytes()).hexdigest()}  {p.relative_to(stage)}")
    put(meta / "md5sums", "\n".join(sums) + "\n", 0o644)


def build(out: Path, pip: list[str], wheels: str | None = None) -> Path:
    stage = out / "deb-stage"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    os.chmod(stage, 0o755)
    install_python(stage, pip, wheels)
    install_files(stage)
    for d in [stage, *[p for p in stage.rglob("*") if p.is_dir()]]:
        os.chmod(d, 0o755)
    write_debian(stage)
    deb = out / f"edgemail_{version()}_all.deb"
    r = subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(stage), str(deb)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise BuildError(f"dpkg-deb failed: {r.stderr.strip()}")
    shutil.rmtree(stage)
    return deb


def main() -> int:
    ap = argparse.ArgumentParser(description="Build edgemail_VERSION_all.deb with dpkg-deb.")
    ap.add_argument("--out", default=str(ROOT / "dist"), help="directory for the .deb (default: dist/)")
    ap.add_argument("--wheels", help="install the dependencies from this directory only (no network)")
    ap.add_argument("--pip", default=f"{sys.executable} -m pip", help="the pip to install with")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    try:
        print(build(out, args.pip.split(), args.wheels and str(Path(args.wheels).resolve())))
    except BuildError as exc:
        print(f"make deb: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
