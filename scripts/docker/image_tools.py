"""The commands a Dockerfile stage's image would have, as a directory of links to this host's copies.

check-dockerfile runs each RUN step on the host; with the host's whole PATH a step could use a tool its image
lacks (node, g++) and still pass. Each step's PATH is instead a directory holding only the commands of:
Debian's `required` packages, what the base image adds (BASE_IMAGES), the packages the stage installs with
apt-get, all their installed dependencies, and the base image's own tool directory (rustup's, Python's).
Approximate by design: the host's versions stand in for the image's, and a package the host lacks is
reported, not guessed.
"""
import functools
import os
import re
import shutil
import subprocess
import sys

# What docker-library's slim images add to Debian's required packages, and a host command whose directory
# holds the tools they install outside dpkg (rustup's cargo/rustc; Python built into /usr/local/bin).
BASE_IMAGES = {
    "rust:": ({"ca-certificates", "gcc", "libc6-dev", "wget"}, "cargo"),
    "python:": ({"ca-certificates", "netbase", "tzdata"}, "python3"),
    "debian:": (set(), None),
}
BIN_DIRS = ("/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin")
DPKG_INFO = "/var/lib/dpkg/info"


@functools.cache
def _installed():
    """{package: (priority, installed packages it depends on)} from one dpkg-query over the whole database
    (every installed alternative of an `a | b` counts)."""
    fmt = "${db:Status-Abbrev}\t${Package}\t${Priority}\t${Depends}, ${Pre-Depends}\n"
    out = subprocess.run(["dpkg-query", "-W", "-f", fmt], check=True, capture_output=True, text=True).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    rows = [(pkg, prio, deps) for status, pkg, prio, deps in rows if status.startswith("ii")]
    names = {pkg for pkg, _, _ in rows}
    split = lambda deps: {re.split(r"[\s(:]", a.strip())[0] for a in re.split(r"[,|]", deps) if a.strip()}
    return {pkg: (prio, split(deps) & names) for pkg, prio, deps in rows}


def _closure(packages):
    db, seen, todo = _installed(), set(), list(packages)
    while todo:
        pkg = todo.pop()
        if pkg not in seen:
            seen.add(pkg)
            todo.extend(db[pkg][1] - seen)
    return seen


def _files(pkg):
    for name in (f"{pkg}.list", f"{pkg}:amd64.list"):
        path = os.path.join(DPKG_INFO, name)
        if os.path.exists(path):
            return [line.strip() for line in open(path)]
    return []


def apt_packages(run_texts):
    """Package names a stage's RUN steps install with `apt-get install` (version pins dropped)."""
    names = set()
    for text in run_texts:
        for part in re.findall(r"apt-get install ([^&;|]*)", text):
            names |= {w.split("=")[0] for w in part.split() if not w.startswith("-")}
    return names


def tool_dir(base_image, run_texts, dest):
    """Fills `dest` with links to the commands the stage's image would have; returns (dest, notes)."""
    extra = next((v for k, v in BASE_IMAGES.items() if base_image.startswith(k)), None)
    if extra is None:
        sys.exit(f"check-dockerfile: FAILED: no tool list for base image {base_image} (add it to BASE_IMAGES)")
    packages, tool_cmd = extra
    db = _installed()
    wanted = {pkg for pkg, (prio, _) in db.items() if prio == "required"} | packages | apt_packages(run_texts)
    missing = sorted(wanted - db.keys())
    allowed = {os.path.realpath(f) for pkg in _closure(wanted - set(missing)) for f in _files(pkg)
               if os.path.dirname(f) in BIN_DIRS}
    os.makedirs(dest, exist_ok=True)
    for d in BIN_DIRS:
        for name in os.listdir(d) if os.path.isdir(d) else []:
            path = os.path.join(d, name)
            # Alternatives (cc -> gcc) and version links (python3 -> python3.11) count when their target does.
            if os.path.realpath(path) in allowed and not os.path.lexists(os.path.join(dest, name)):
                os.symlink(path, os.path.join(dest, name))
    if tool_cmd:
        found = shutil.which(tool_cmd)
        if tool_cmd == "python3" and found:  # a pyenv shim: the interpreter it runs
            probe = [found, "-c", "import sys; print(sys.executable)"]
            found = subprocess.run(probe, check=False, capture_output=True, text=True).stdout.strip() or None
        home = os.path.dirname(os.path.realpath(found)) if found else None
        for name in os.listdir(home) if home else []:
            if not os.path.lexists(os.path.join(dest, name)):
                os.symlink(os.path.join(home, name), os.path.join(dest, name))
    notes = [f"not on this host, so not checked: {', '.join(missing)}"] if missing else []
    return dest, notes
