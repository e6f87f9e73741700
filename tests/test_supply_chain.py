"""The supply chain: lock files with hashes, their use by the venv and the image, `make audit`.

requirements/*.lock pin every package with == and the sha256 of its files (`make lock` writes
them). These tests check that the locks cover pyproject.toml and each other, that the Makefile's
virtualenv and deploy/Dockerfile install from them with --require-hashes (and the project itself
with --no-deps), that the image's base is pinned by digest, and that `make audit` audits the locks
where a vulnerability database answers and fails, saying so, where none does.
"""

from __future__ import annotations

import http.server
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from tests.test_deploy import dockerfile

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
MAKEFILE = ROOT / "Makefile"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
REQUIREMENTS = ROOT / "requirements"
RUNTIME_LOCK = REQUIREMENTS / "runtime.lock"
BUILD_LOCK = REQUIREMENTS / "build.lock"
DEV_LOCK = REQUIREMENTS / "dev.lock"
LOCKS = (RUNTIME_LOCK, BUILD_LOCK, DEV_LOCK)

SHA256 = re.compile(r"[0-9a-f]{64}")
PIN = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)")
HASH_OPTION = re.compile(r"--hash=sha256:(?P<digest>\S+)")
# The sentence `make audit` prints when it could not check anything.
UNREACHABLE = re.compile(
    r"make audit: no vulnerability database reachable \(tried .+\): nothing was checked"
)


@dataclass(frozen=True)
class Pin:
    version: Version
    hashes: frozenset[str]


def parse_lock(path: Path) -> dict[NormalizedName, Pin]:
    """A lock file's pins. Every entry must be `name==version` followed by sha256 hashes only."""
    pins: dict[NormalizedName, Pin] = {}
    for entry in _entries(path):
        words = entry.split()
        match = PIN.fullmatch(words[0])
        assert match, f"{path.name}: {words[0]!r} is not pinned with =="
        digests = []
        for option in words[1:]:
            hashed = HASH_OPTION.fullmatch(option)
            assert hashed, f"{path.name}: {words[0]}: unexpected {option!r} (only --hash=sha256:)"
            assert SHA256.fullmatch(hashed["digest"]), f"{path.name}: bad sha256 in {option!r}"
            digests.append(hashed["digest"])
        assert digests, f"{path.name}: {words[0]} has no --hash=sha256:"
        name = canonicalize_name(match["name"])
        assert name not in pins, f"{path.name}: {name} is pinned twice"
        pins[name] = Pin(Version(match["version"]), frozenset(digests))
    return pins


def _entries(path: Path) -> Iterator[str]:
    """A requirements file's entries: comments dropped, continuation lines joined."""
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = "" if raw.lstrip().startswith("#") else raw.strip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        entry = (pending + line).strip()
        pending = ""
        if entry:
            yield entry
    assert not pending.strip(), f"{path.name} ends inside a continuation line"


def pyproject() -> dict[str, object]:
    with PYPROJECT.open("rb") as handle:
        return tomllib.load(handle)


def requirements(*groups: str) -> list[Requirement]:
    """pyproject.toml's requirements: "runtime", "dev" (the dev extra) and "build" (the backend)."""
    data = pyproject()
    project = data["project"]
    assert isinstance(project, dict)
    build_system = data["build-system"]
    assert isinstance(build_system, dict)
    sources = {
        "runtime": project["dependencies"],
        "dev": project["optional-dependencies"]["dev"],
        "build": build_system["requires"],
    }
    return [Requirement(text) for group in groups for text in sources[group]]


# The locks that must hold each group of pyproject's requirements.
COVERAGE = {
    RUNTIME_LOCK: ("runtime",),
    BUILD_LOCK: ("build",),
    DEV_LOCK: ("runtime", "dev", "build"),
}


# --- the lock files ------------------------------------------------------------------------------


@pytest.mark.parametrize("lock", LOCKS, ids=lambda path: path.name)
def test_each_pyproject_requirement_is_pinned_with_hashes_within_its_specifier(lock: Path) -> None:
    """Every dependency named in pyproject.toml is pinned (==, sha256) in its locks, in range."""
    pins = parse_lock(lock)
    for requirement in requirements(*COVERAGE[lock]):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{lock.name} does not pin {requirement.name} (run `make lock`)"
        version = pins[name].version
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{lock.name} pins {name}=={version}, outside pyproject's {requirement}"
        )


@pytest.mark.parametrize("lock", LOCKS, ids=lambda path: path.name)
def test_locks_are_closed_under_the_dependencies_of_what_they_pin(lock: Path) -> None:
    """Every package that a locked package needs (on the image's Python) is locked too, in range.

    Walks the requirement graph from pyproject.toml through the metadata of the installed
    distributions (the dev virtualenv holds every locked version, see the next test), so a lock
    edited by hand, or left behind after a dependency moved, fails here and not in a build.
    """
    pins = parse_lock(lock)
    environment: dict[str, str] = dict(default_environment())
    queue = [(requirement, "pyproject.toml") for requirement in requirements(*COVERAGE[lock])]
    seen: set[tuple[NormalizedName, frozenset[str]]] = set()
    while queue:
        requirement, wanted_by = queue.pop()
        name = canonicalize_name(requirement.name)
        extras = frozenset(requirement.extras)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        assert name in pins, f"{lock.name} does not pin {name}, which {wanted_by} needs"
        assert requirement.specifier.contains(pins[name].version, prereleases=True), (
            f"{lock.name}: {name}=={pins[name].version} but {wanted_by} needs {requirement}"
        )
        for text in metadata.distribution(name).requires or []:
            child = Requirement(text)
            if child.marker is None or any(
                child.marker.evaluate({**environment, "extra": extra})
                for extra in ("", *sorted(extras))
            ):
                queue.append((child, f"{name}=={pins[name].version}"))


def test_the_virtualenv_runs_the_locked_versions() -> None:
    """The tests run against exactly what dev.lock pins (make's venv installs it)."""
    for name, pin in parse_lock(DEV_LOCK).items():
        installed = Version(metadata.version(name))
        assert installed == pin.version, (
            f"{name} {installed} is installed, dev.lock pins {pin.version}"
        )


def test_locks_agree_with_each_other() -> None:
    """A package has one version and one set of hashes in every lock; dev.lock holds them all."""
    runtime, build, dev = (parse_lock(path) for path in LOCKS)
    for name, pin in {**runtime, **build}.items():
        assert name in dev, f"{name} is locked for the image but not in dev.lock"
        assert dev[name] == pin, f"{name}: dev.lock differs from the runtime or build lock"
    # Only the build backend and what it needs are in build.lock; the image runs neither.
    assert "hatchling" in build
    assert "hatchling" not in runtime


@pytest.mark.parametrize("lock", LOCKS, ids=lambda path: path.name)
def test_lock_headers_say_how_to_regenerate_them_and_for_which_python(lock: Path) -> None:
    """`make lock` regenerates each lock; each is resolved for the Python of the image's base."""
    lines = lock.read_text(encoding="utf-8").splitlines()
    header = "\n".join(line for line in lines[: _first_entry(lines)])
    assert re.search(r"^#\s+make lock$", header, re.MULTILINE), f"{lock.name}: no `make lock`"
    python = re.search(r"autogenerated by pip-compile with Python (\d+\.\d+)", header)
    assert python, f"{lock.name}: the header does not name the Python it was resolved for"
    base = re.fullmatch(r"python:(\d+\.\d+)-slim\S*", _from_images()[-1])
    assert base, "the image's base is not a python:X.Y-slim image"
    assert python[1] == base[1], f"{lock.name} was resolved for Python {python[1]}, not {base[1]}"
    # No index or wheel-directory options: a lock installs from wherever pip is pointed, by hash.
    for entry in _entries(lock):
        assert not entry.startswith("-"), f"{lock.name}: unexpected option {entry!r}"


def _first_entry(lines: list[str]) -> int:
    return next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#"))


# --- the container image -------------------------------------------------------------------------


def _from_images() -> list[str]:
    """Each FROM line's image, with its digest split off (asserting that there is one)."""
    images = []
    for instruction, rest in dockerfile():
        if instruction != "FROM":
            continue
        image = rest.split()[0]
        name, at, digest = image.partition("@sha256:")
        assert at and SHA256.fullmatch(digest), f"FROM {image} is not pinned by @sha256:<64 hex>"
        images.append(name)
    assert images, "the Dockerfile has no FROM"
    return images


def test_dockerfile_base_images_are_pinned_by_digest() -> None:
    """Every FROM names its image by digest; no frontend image is pulled by tag either."""
    assert _from_images() == ["python:3.11-slim"]
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        directive = re.match(r"#\s*syntax\s*=\s*(\S+)", line)
        if directive:
            assert "@sha256:" in directive[1], "the # syntax= frontend image is not pinned"


def _pip_installs(commands: list[str]) -> list[list[str]]:
    """The arguments of every `pip install` in shell commands (after `install`)."""
    installs = []
    for command in commands:
        for part in re.split(r"&&|;|\|\|", command):
            words = shlex.split(part)
            if "pip" in " ".join(words) and "install" in words:
                installs.append(words[words.index("install") + 1 :])
    return installs


def test_dockerfile_installs_the_runtime_lock_with_hashes_then_the_package_without_deps() -> None:
    """The image's dependencies come from runtime.lock, hash-checked; the package adds none."""
    runs = [rest for instruction, rest in dockerfile() if instruction == "RUN"]
    installs = _pip_installs(runs)
    assert installs, "the Dockerfile installs nothing with pip"
    locked = [args for args in installs if "-r" in args]
    locked_files = {args[args.index("-r") + 1] for args in locked}
    assert "/src/requirements/runtime.lock" in locked_files
    assert "/src/requirements/build.lock" in locked_files
    for args in installs:
        if "-r" in args:
            assert "--require-hashes" in args, f"pip install {' '.join(args)}: no --require-hashes"
        else:
            assert "--no-deps" in args, (
                f"pip install {' '.join(args)}: neither locked nor --no-deps"
            )
    # The runtime lock goes in before the package, and the wheel is built without isolation (no
    # unpinned download of the build backend).
    joined = " ".join(runs)
    assert joined.index("runtime.lock") < joined.index("--no-deps")
    assert "--no-build-isolation" in joined


# --- the Makefile --------------------------------------------------------------------------------


def _make(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run make in the repository, free of a calling make's flags."""
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    return subprocess.run(
        ["make", "--no-print-directory", "-f", str(MAKEFILE), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _stamped_venv(tmp_path: Path) -> Path:
    """A virtualenv directory whose stamps are newer than pyproject.toml and the locks."""
    venv = tmp_path / "venv"
    venv.mkdir()
    stamped = max(time.time(), 1 + max(path.stat().st_mtime for path in (PYPROJECT, *LOCKS)))
    for stamp in (".runtime", ".dev"):
        (venv / stamp).touch()
        os.utime(venv / stamp, (stamped, stamped))
    return venv


@pytest.mark.parametrize(
    ("stamp", "locks"),
    [(".runtime", ("runtime.lock", "build.lock")), (".dev", ("dev.lock",))],
)
def test_makefile_venv_installs_the_locks_with_hashes(
    tmp_path: Path, stamp: str, locks: tuple[str, ...]
) -> None:
    """The venv set-up installs its locks with --require-hashes, then the project with --no-deps."""
    venv = tmp_path / "fresh"
    result = _make("-n", f"VENV={venv}", f"{venv}/{stamp}")
    assert result.returncode == 0, result.stderr
    installs = _pip_installs(result.stdout.splitlines())
    assert len(installs) == 2, result.stdout
    locked, project = installs
    assert "--require-hashes" in locked
    assert [locked[i + 1] for i, word in enumerate(locked) if word == "-r"] == [
        f"requirements/{lock}" for lock in locks
    ]
    assert project[-2:] == ["-e", "."]
    assert "--no-deps" in project
    assert "--no-build-isolation" in project


@pytest.mark.parametrize(
    ("stamp", "lock"),
    [
        (".runtime", "runtime.lock"),
        (".runtime", "build.lock"),
        (".dev", "dev.lock"),
    ],
)
def test_a_changed_lock_reinstalls_the_venv(tmp_path: Path, stamp: str, lock: str) -> None:
    """The stamps depend on the locks: up to date as is, reinstalled once a lock changes."""
    venv = _stamped_venv(tmp_path)
    quiet = _make("-n", f"VENV={venv}", f"{venv}/{stamp}")
    assert quiet.returncode == 0, quiet.stderr
    assert not _pip_installs(quiet.stdout.splitlines()), "an up-to-date venv would be reinstalled"
    changed = _make("-n", "-W", f"requirements/{lock}", f"VENV={venv}", f"{venv}/{stamp}")
    assert changed.returncode == 0, changed.stderr
    assert f"-r requirements/{lock}" in changed.stdout, f"a changed {lock} reinstalls nothing"


def test_make_audit_names_pip_audit_and_the_locks(tmp_path: Path) -> None:
    """`make -n audit` shows pip-audit run on every lock, hash-checked, installing nothing."""
    venv = _stamped_venv(tmp_path)
    result = _make("-n", f"VENV={venv}", "audit")
    assert result.returncode == 0, result.stderr
    audit = next(line for line in result.stdout.splitlines() if "pip-audit" in line)
    script = result.stdout[result.stdout.index(audit) :]
    for lock in LOCKS:
        assert f"-r requirements/{lock.name}" in script
    for flag in ("--require-hashes", "--disable-pip", "--strict"):
        assert flag in script
    assert "exit 2" in script


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    """A BIN directory: the real interpreter and a pip-audit that records its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    audit = bin_dir / "pip-audit"
    audit.write_text(
        "#!/bin/sh\n"
        'printf "%s\\n" "$@" > "$(dirname "$0")/pip-audit.args"\n'
        'exit "${FAKE_AUDIT_RC:-0}"\n',
        encoding="utf-8",
    )
    audit.chmod(0o755)
    return bin_dir


@pytest.fixture
def database() -> Iterator[str]:
    """A loopback HTTP server standing in for a vulnerability database that answers."""

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/pypi/jinja2/3.1.6/json"
    finally:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_make_audit_without_a_database_says_so_and_fails(tmp_path: Path, fake_bin: Path) -> None:
    """No database answers: one plain sentence, exit status 2, and pip-audit is never run."""
    venv = _stamped_venv(tmp_path)
    port = _closed_port()
    result = _make(
        f"VENV={venv}",
        f"BIN={fake_bin}",
        f"AUDIT_DATABASES=pypi=http://127.0.0.1:{port}/ osv=http://127.0.0.1:{port}/v1",
        "audit",
    )
    assert result.returncode == 2
    assert UNREACHABLE.search(result.stderr), result.stderr
    assert f"http://127.0.0.1:{port}/v1" in result.stderr
    assert not (fake_bin / "pip-audit.args").exists(), "pip-audit ran without a database"


@pytest.mark.parametrize(("audit_rc", "make_rc"), [(0, 0), (1, 2)])
def test_make_audit_runs_pip_audit_on_the_first_database_that_answers(
    tmp_path: Path,
    fake_bin: Path,
    database: str,
    audit_rc: int,
    make_rc: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A database answers: pip-audit checks all three locks against it; its verdict is make's."""
    venv = _stamped_venv(tmp_path)
    monkeypatch.setenv("FAKE_AUDIT_RC", str(audit_rc))
    result = _make(
        f"VENV={venv}",
        f"BIN={fake_bin}",
        f"AUDIT_DATABASES=pypi=http://127.0.0.1:{_closed_port()}/ osv={database}",
        "audit",
    )
    assert result.returncode == make_rc, (result.stdout, result.stderr)
    assert not UNREACHABLE.search(result.stderr)
    args = (fake_bin / "pip-audit.args").read_text(encoding="utf-8").split("\n")
    assert args[args.index("--vulnerability-service") + 1] == "osv"
    assert [args[i + 1] for i, word in enumerate(args) if word == "-r"] == [
        f"requirements/{lock.name}" for lock in LOCKS
    ]
    assert {"--require-hashes", "--disable-pip", "--strict"} <= set(args)


def test_dockerignore_keeps_the_locks_in_the_build_context() -> None:
    """The image build reads requirements/ from the context."""
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert not ignored & {"requirements", "requirements/", "*.lock", "requirements/*"}
