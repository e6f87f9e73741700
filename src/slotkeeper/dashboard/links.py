"""Links from the dashboard to the repositories: pure functions, no I/O.

A link is only ever built from parts checked here (a host name, path segments of plain
characters, a git ref quoted into the path), never with a userinfo part, a query or a fragment:
a git remote such as ``https://x-access-token:SECRET@github.com/acme/deploy.git`` gives no link
at all rather than one that shows its secret to whoever reads the page.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

#: a full commit id: a ref that is one links to the commit, any other ref to its tree
FULL_SHA = re.compile(r"[0-9a-fA-F]{40}")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_SEGMENT = re.compile(r"[A-Za-z0-9_.~-]{1,100}")
#: ``owner/repo`` as the manifests name an environment's repository
_REPOSITORY = re.compile(r"[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}")
GITHUB = "https://github.com"


def web_url(git_url: str) -> str | None:
    """The web page of the repository a git remote URL names, or None when it names none.

    ``https://github.com/acme/deploy.git``, ``git@github.com:acme/deploy.git`` and
    ``ssh://git@ghe.example.com/acme/deploy.git`` give ``https://HOST/acme/deploy`` (an
    ``http://`` remote gives an ``http://`` page, which the dashboard does not link). Refused:
    a URL with credentials in it (a password, or any user of an http(s) URL, which is a token
    there), a query or a fragment, a file path or ``file://`` URL, any other scheme, and a path
    that is not two or more plain segments (``owner/repo``, ``group/subgroup/repo``).
    """
    url = git_url.strip()
    if not url or any(c.isspace() or not c.isprintable() for c in url) or "\\" in url:
        return None
    port = ""
    if "://" in url:
        try:
            parts = urlsplit(url)
            number = parts.port
        except ValueError:
            return None
        scheme = parts.scheme.lower()
        if scheme not in ("https", "http", "ssh") or parts.query or parts.fragment:
            return None
        if "#" in url or "?" in url:  # an empty query or fragment is still one
            return None
        if parts.password is not None or (scheme != "ssh" and "@" in parts.netloc):
            return None
        if scheme != "ssh" and number is not None:
            port = f":{number}"  # an ssh port is not the web server's
        host, path = parts.hostname, parts.path
        web = "http" if scheme == "http" else "https"
    else:
        # scp-like syntax: [user@]host:path; a path or a drive letter (C:/...) is no remote
        user_host, colon, path = url.partition(":")
        user, _, host = user_host.rpartition("@")
        if not colon or "/" in user_host or len(host) < 2 or ":" in user:
            return None
        web = "https"
    if not host or not _HOST.fullmatch(host):
        return None
    segments = path.strip("/").removesuffix(".git").split("/")
    if len(segments) < 2 or any(
        not _SEGMENT.fullmatch(segment) or segment in (".", "..") for segment in segments
    ):
        return None
    return f"{web}://{host.lower()}{port}/{'/'.join(segments)}"


def ref_url(repository: str | None, ref: str | None) -> str | None:
    """Where GitHub shows ``ref`` of ``repository`` (``owner/repo``): the commit when the ref is
    a full commit id, else the tree of the branch or tag; None without both."""
    if not repository or not ref or not _REPOSITORY.fullmatch(repository):
        return None
    if set(repository.split("/")) & {".", ".."}:
        return None
    if FULL_SHA.fullmatch(ref):
        return f"{GITHUB}/{repository}/commit/{ref.lower()}"
    name = ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
    if not name or name.startswith("/") or ".." in name:
        return None
    return f"{GITHUB}/{repository}/tree/{quote(name, safe='/')}"


def commit_url(web: str | None, sha: str | None) -> str | None:
    """The page of commit ``sha`` under a repository's web page (``https://HOST/owner/repo``),
    for a full commit id only; None otherwise."""
    if not web or not sha or not FULL_SHA.fullmatch(sha):
        return None
    return f"{web}/commit/{sha.lower()}"


def https_base(url: str | None) -> str | None:
    """A repository's web page as the dashboard links it: ``url`` checked by ``web_url`` (a git
    remote URL is turned into its page), and only when it is an ``https://`` one."""
    page = web_url(url) if url else None
    return page if page is not None and page.startswith("https://") else None
