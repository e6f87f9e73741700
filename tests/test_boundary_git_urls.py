"""The git source at the trust boundary: the token reaches git only for https remotes and only
through its environment, git's failures are reported on one bounded line without credentials,
and a --path cannot leave the repository (issue 15: the mutants these tests kill). The message
rules are pure functions, tested as tables; the rest runs git, real or a stand-in on PATH."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from slotkeeper import sources
from slotkeeper.redact import redact_text, without_userinfo
from slotkeeper.sources import (
    MAX_GIT_MESSAGE,
    GitSource,
    SourceError,
    _git_failure,
    _git_token,
    _password,
)

TOKEN = "ghp_fromtheenvironment0123"


@pytest.fixture(autouse=True)
def no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLOTKEEPER_GIT_TOKEN", raising=False)
    monkeypatch.delenv("SLOTKEEPER_GIT_TOKEN_FILE", raising=False)


@pytest.mark.parametrize(
    ("stderr", "said"),
    [
        (
            "fatal: no repo\nPlease make sure you have the correct access rights\nand it exists.",
            "fatal: no repo Please make sure you have the correct access rights and it exists.",
        ),
        ("a line without prefix\nfatal: x", "a line without prefix; fatal: x"),
        ("hint: try this\nfatal: real\nwarning: meh", "fatal: real"),
        ("hint: only hints\nhint:  are   said", "hint: only hints; hint: are said"),
        ("fatal: twice\n\nfatal: twice\nerror: once", "fatal: twice; error: once"),
        ("", ""),
    ],
)
def test_git_failure_keeps_what_failed_on_one_line(stderr: str, said: str) -> None:
    """Continuation lines join their message, hints go unless they are all, repeats go."""
    assert _git_failure(stderr, secrets=()) == said


def test_git_failure_is_cut_to_its_limit_after_redaction() -> None:
    """Exactly MAX_GIT_MESSAGE characters stay whole; one more is cut, ending in an ellipsis."""
    exact = "fatal: " + "x" * (MAX_GIT_MESSAGE - 7)
    assert _git_failure(exact, secrets=()) == exact
    over = exact + "y"
    cut = _git_failure(over, secrets=())
    assert cut == exact[: MAX_GIT_MESSAGE - 1] + "…" and len(cut) == MAX_GIT_MESSAGE
    secret = "s3cr3t-" * 80
    assert "s3cr3t" not in _git_failure(f"fatal: {secret}", secrets=(secret,))


@pytest.mark.parametrize(
    ("secret", "hidden"), [("abcd", True), ("abc", False), (None, False), ("", False)]
)
def test_secrets_of_four_characters_or_more_are_hidden(secret: str | None, hidden: bool) -> None:
    """Shorter ones would blank ordinary words; None and empty are skipped."""
    text = redact_text("token abcd and abc at https://u:pw@host/r", secrets=(secret, "zzzz"))
    assert text.startswith("token ***" if hidden else "token abcd")
    assert text.endswith("https://***@host/r")


@pytest.mark.parametrize(
    ("url", "password"),
    [
        ("https://deployer:pw0rd@host/r.git", "pw0rd"),
        ("https://ghp_token0123@host/r.git", "ghp_token0123"),
        ("https://host/r.git", None),
        ("git@github.com:acme/r.git", None),
    ],
)
def test_the_credential_of_a_url(url: str, password: str | None) -> None:
    """The password of ``user:password@``, or a lone token; none without userinfo."""
    assert _password(url) == password


def test_the_recorded_origin_has_no_userinfo() -> None:
    """Credentials are stripped from https URLs; scp-like ssh forms are kept."""
    assert without_userinfo("https://u:p@host/r.git") == "https://host/r.git"
    assert without_userinfo("git@github.com:acme/r.git") == "git@github.com:acme/r.git"


def test_the_git_token_from_the_environment_or_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The variable wins; a file's token is stripped; a blank file is no token; an unreadable
    file is a SourceError naming the variable."""
    assert _git_token() is None
    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN}\n")
    monkeypatch.setenv("SLOTKEEPER_GIT_TOKEN_FILE", str(token_file))
    assert _git_token() == TOKEN
    token_file.write_text("  \n")
    assert _git_token() is None
    monkeypatch.setenv("SLOTKEEPER_GIT_TOKEN_FILE", str(tmp_path / "absent"))
    with pytest.raises(SourceError, match="SLOTKEEPER_GIT_TOKEN_FILE: cannot read"):
        _git_token()
    monkeypatch.setenv("SLOTKEEPER_GIT_TOKEN", "from-the-variable")
    assert _git_token() == "from-the-variable"


@pytest.fixture
def stand_in_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``git`` first on PATH that records its arguments and the GIT_CONFIG_* it was given,
    and answers as GIT_STAND_IN_EXIT and GIT_STAND_IN_STDERR say."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "git-calls.jsonl"
    script = bin_dir / "git"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"with open({str(log)!r}, 'a') as out:\n"
        "    config = {k: v for k, v in os.environ.items() if k.startswith('GIT_CONFIG_')}\n"
        "    out.write(json.dumps({'args': sys.argv[1:], 'config': config}) + '\\n')\n"
        "sys.stderr.write(os.environ.get('GIT_STAND_IN_STDERR', ''))\n"
        "print('0123456789abcdef0123456789abcdef01234567\\trefs/heads/main')\n"
        "sys.exit(int(os.environ.get('GIT_STAND_IN_EXIT', '0')))\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def calls(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.mark.parametrize(
    ("url", "token", "header"),
    [
        ("https://example.com/acme/d.git", TOKEN, True),
        ("https://example.com/acme/d.git", None, False),
        ("file:///srv/acme/d.git", TOKEN, False),
        ("ssh://git@example.com/acme/d.git", TOKEN, False),
    ],
)
def test_the_token_goes_to_https_remotes_in_gits_environment_only(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stand_in_git: Path,
    url: str,
    token: str | None,
    header: bool,
) -> None:
    """An https remote gets the token as an http.extraHeader through GIT_CONFIG_*, never on the
    command line; other remotes, or no token, get no header."""
    if token is not None:
        monkeypatch.setenv("SLOTKEEPER_GIT_TOKEN", token)
    source = GitSource(url, branch="main", path=".", cache_dir=tmp_path / "cache")
    assert source.peek() == "0123456789abcdef0123456789abcdef01234567"
    [call] = calls(stand_in_git)
    basic = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    expected = {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.extraHeader",
        "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
    }
    assert call["config"] == (expected if header else {})
    assert TOKEN not in json.dumps(call["args"])


def test_a_failing_git_names_its_command_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stand_in_git: Path
) -> None:
    """git's own words, or its exit code when it said nothing; the command is named."""
    source = GitSource("https://example.com/d.git", branch="main", path=".", cache_dir=tmp_path)
    monkeypatch.setenv("GIT_STAND_IN_EXIT", "128")
    monkeypatch.setenv("GIT_STAND_IN_STDERR", "fatal: repository not found\nhint: check it\n")
    with pytest.raises(SourceError) as said:
        source.peek()
    assert str(said.value) == (
        "git ls-remote of https://example.com/d.git#main:. failed: fatal: repository not found"
    )
    monkeypatch.setenv("GIT_STAND_IN_STDERR", "")
    monkeypatch.setenv("GIT_STAND_IN_EXIT", "3")
    with pytest.raises(SourceError, match=r"ls-remote of .* failed: exit code 3$"):
        source.peek()


def test_git_missing_or_hanging_is_a_source_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No git on PATH: the system's reason; a git that does not finish: the timeout, and no
    command line (it may quote a URL's credentials)."""
    source = GitSource(
        "https://u:pw@example.com/d.git", branch="main", path=".", cache_dir=tmp_path
    )
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(SourceError) as missing:
        source.peek()
    assert str(missing.value) == (
        "git ls-remote of https://***@example.com/d.git#main:. failed: No such file or directory"
    )

    def hang(command: list[str], **_kwargs: object) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(command, 300)

    monkeypatch.setattr(sources.subprocess, "run", hang)
    with pytest.raises(SourceError) as hung:
        source.peek()
    assert str(hung.value) == (
        "git ls-remote of https://***@example.com/d.git#main:. failed: timed out after 300 s"
    )


@pytest.fixture
def origin(tmp_path: Path) -> tuple[str, str]:
    """A local repository with manifests under deploy/: its file:// URL and its head sha."""
    work = tmp_path / "origin"
    (work / "deploy").mkdir(parents=True)
    (work / "deploy" / "envs.yaml").write_text("{}\n")

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(work), *args], check=True, capture_output=True, text=True
        ).stdout

    git("init", "-q", "-b", "main")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m", "m")
    return f"file://{work}", git("rev-parse", "HEAD").strip()


def test_a_path_is_read_inside_the_repository_only(tmp_path: Path, origin: tuple[str, str]) -> None:
    """A --path inside is checked out at the fetched sha; one leaving the repository or
    missing is refused, the latter naming the short sha."""
    url, sha = origin
    cache = tmp_path / "cache"
    checkout = GitSource(url, branch="main", path="deploy", cache_dir=cache).fetch()
    assert checkout.version == sha and (checkout.manifests / "envs.yaml").is_file()
    with pytest.raises(SourceError, match=r"--path '\.\./\.\.' leaves the repository"):
        GitSource(url, branch="main", path="../..", cache_dir=cache).fetch()
    with pytest.raises(SourceError) as missing:
        GitSource(url, branch="main", path="absent", cache_dir=cache).fetch()
    assert str(missing.value).endswith(f"no such path in the repository at {sha[:12]}")
