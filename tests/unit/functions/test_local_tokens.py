"""The local development issuer (local_stack/tokens.py): Cognito-shaped tokens, checked as
API Gateway's JWT authorizer checks them, without starting the stack."""

from __future__ import annotations

import stat
import time

import jwt
import pytest

from local_stack.tokens import KEY_FILE, Issuer, TokenError, subject_of

ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_inktexlocal"
CLIENT = "inktexlocalclient"


@pytest.fixture
def issuer(tmp_path) -> Issuer:
    return Issuer.load(tmp_path, ISSUER, CLIENT)


def test_the_key_is_kept_owner_only_and_reused(tmp_path, issuer):
    mode = stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode)
    assert mode == 0o600
    again = Issuer.load(tmp_path, ISSUER, CLIENT)
    assert again.kid == issuer.kid
    assert again.verify(issuer.id_token("alice"), ISSUER, [CLIENT])["sub"] == subject_of("alice")


def test_id_and_access_tokens_verify_with_their_audience(issuer):
    claims = issuer.verify(issuer.id_token("alice", groups=["operators"]), ISSUER, [CLIENT])
    assert claims["aud"] == CLIENT and claims["cognito:groups"] == ["operators"]
    claims = issuer.verify(issuer.access_token("bob"), ISSUER, [CLIENT])
    assert claims["client_id"] == CLIENT and "aud" not in claims


def test_the_published_jwks_verifies_the_tokens(issuer):
    (key,) = issuer.jwks()["keys"]
    assert {key["kty"], key["alg"], key["use"], key["kid"]} == {"RSA", "RS256", "sig", issuer.kid}
    token = issuer.id_token("alice")
    assert jwt.get_unverified_header(token)["kid"] == issuer.kid
    public = jwt.PyJWK(key).key
    decoded = jwt.decode(token, public, algorithms=["RS256"], audience=CLIENT, issuer=ISSUER)
    assert decoded["sub"] == subject_of("alice")


def refusal(issuer: Issuer, token: str, iss: str = ISSUER, aud: str = CLIENT) -> str:
    with pytest.raises(TokenError) as caught:
        issuer.verify(token, iss, [aud])
    return str(caught.value)


def test_refusals_say_why(tmp_path, issuer):
    now = time.time()
    good = issuer.id_token("alice")
    head, body, sig = good.split(".")
    other = Issuer.load(tmp_path / "other", ISSUER, CLIENT)
    assert "not a JWT" in refusal(issuer, "not-a-token")
    assert "expired" in refusal(issuer, issuer.id_token("alice", ttl_s=-1))
    future = {"sub": "s", "iss": ISSUER, "aud": CLIENT, "exp": now + 600, "nbf": now + 300}
    assert "not valid yet" in refusal(issuer, issuer.sign(future))
    assert "'exp'" in refusal(issuer, issuer.sign({"sub": "s", "iss": ISSUER, "aud": CLIENT}))
    assert "issuer" in refusal(issuer, good, iss="https://elsewhere")
    assert "audience" in refusal(issuer, good, aud="another-client")
    assert "signature" in refusal(issuer, f"{head}.{other.id_token('mallory').split('.')[1]}.{sig}")
    assert "key" in refusal(issuer, other.id_token("alice"))  # another key id
    unsigned = jwt.encode(
        {"sub": "s", "iss": ISSUER, "aud": CLIENT, "exp": now + 60},
        key=None,
        algorithm="none",
        headers={"kid": issuer.kid},
    )
    assert "key" in refusal(issuer, unsigned)
