"""GitHub App authentication, the parts that need no GitHub: the JWT slotkeeper signs (checked
with the App's public key, as GitHub checks it), and the operator's mistakes in ``auth.app``
(refused with the target and field named, never the key). The whole flow against the fake
GitHub's App endpoints is in ``test_github_app.py``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from slotkeeper.errors import ConfigError
from slotkeeper.targets.githubapp import CLOCK_DRIFT, JWT_LIFETIME, AppKey
from tests.helpers import Run, environment, image, target_document, write_manifests_and_targets

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def test_the_jwt_is_rs256_signed_by_the_app_key_with_githubs_claims() -> None:
    """iss is the client ID; iat 60 s back for clock drift; exp within GitHub's 10 minutes of
    iat, and still in the future; the signature verifies with the App's public key only."""
    pem = rsa_pem()
    token = AppKey("Iv23liExample", pem, owner="t").jwt(NOW)
    public = serialization.load_pem_private_key(pem.encode(), password=None).public_key()
    claims = jwt.decode(
        token,
        public,  # type: ignore[arg-type]
        algorithms=["RS256"],
        options={"verify_exp": False, "verify_iat": False},
    )
    now = int(NOW.timestamp())
    assert claims == {"iss": "Iv23liExample", "iat": now - CLOCK_DRIFT, "exp": claims["exp"]}
    assert now < claims["exp"] <= claims["iat"] + 600
    assert claims["exp"] - claims["iat"] == JWT_LIFETIME
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, other, algorithms=["RS256"], options={"verify_exp": False})


def test_a_key_that_is_not_an_rsa_pem_is_refused_without_quoting_it() -> None:
    """An EC key, an encrypted key or garbage between PEM lines: a ConfigError naming the
    owner, holding nothing of the key."""
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    garbage = "-----BEGIN RSA PRIVATE KEY-----\nbm90IGEga2V5\n-----END RSA PRIVATE KEY-----"
    with pytest.raises(ConfigError, match="is RSA; this one is not") as not_rsa:
        AppKey("Iv1", ec_pem, owner="target 'github' auth.app.privateKey")
    with pytest.raises(ConfigError, match="not a readable private key") as unreadable:
        AppKey("Iv1", garbage, owner="target 'github' auth.app.privateKey")
    for raised in (not_rsa, unreadable):
        assert "target 'github' auth.app.privateKey" in str(raised.value)
        assert "bm90IGEga2V5" not in str(raised.value) and "MII" not in str(raised.value)


def app_target(**app: Any) -> dict[str, Any]:
    return target_document("github", type="github", auth={"app": app})


def declare(workdir: Path, target: dict[str, Any]) -> None:
    env = environment("production", {"api": image()}, repository="acme/web", targets=["github"])
    env["spec"]["slots"]["api"]["ref"] = "main"
    write_manifests_and_targets(workdir / "m", env, target)


@pytest.mark.parametrize(
    ("app", "field", "message"),
    [
        ({"privateKey": {"file": "k.pem"}}, "spec.auth.app", "give clientId (or appId)"),
        ({"clientId": "Iv1"}, "spec.auth.app.privateKey", "required"),
        (
            {"clientId": "Iv1", "privateKey": "-----BEGIN RSA PRIVATE KEY-----"},
            "spec.auth.app.privateKey",
            "inline secrets are not allowed",
        ),
        ({"appId": 0, "privateKey": {"env": "K"}}, "spec.auth.app.appId", "greater than or equal"),
    ],
)
def test_validate_names_the_field_of_a_wrong_app_setting(
    sk: Callable[..., Run],
    workdir: Path,
    app: dict[str, Any],
    field: str,
    message: str,
) -> None:
    """A mistake in `auth.app` is a targets-file error at its field, exit 1, and an inline key
    is never echoed."""
    declare(workdir, app_target(**app))
    result = sk("validate", "-m", "m")
    assert result.code == 1
    assert field in result.err and message in result.err, result.err
    assert "BEGIN RSA" not in result.err


def test_token_and_app_together_or_neither_is_refused(
    sk: Callable[..., Run], workdir: Path
) -> None:
    """Exactly one credential: a token and an App, or none, is one error naming both fields."""
    both = app_target(clientId="Iv1", privateKey={"env": "K"})
    both["spec"]["token"] = {"env": "GITHUB_TOKEN"}
    declare(workdir, both)
    assert "give exactly one of token and auth" in sk("validate", "-m", "m").err
    declare(workdir, target_document("github", type="github"))
    result = sk("validate", "-m", "m")
    assert result.code == 1 and "give exactly one of token and auth" in result.err


def test_apply_refuses_a_key_file_that_is_not_a_pem_naming_the_field_not_the_content(
    sk: Callable[..., Run], workdir: Path, tmp_path: Path
) -> None:
    """A token pasted where the App's key belongs: exit 1 before any request, the file named,
    its content not."""
    key_file = tmp_path / "app.pem"
    key_file.write_text("ghp_notakeyatall0123456789\n")
    declare(workdir, app_target(clientId="Iv1", privateKey={"file": str(key_file)}))
    result = sk("apply", "--yes", "-m", "m")
    assert result.code == 1
    assert "auth.app.privateKey" in result.err and str(key_file) in result.err, result.err
    assert "does not hold a PEM private key" in result.err
    assert "ghp_notakeyatall" not in result.err + result.out
