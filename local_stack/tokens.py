"""The local development issuer: RS256 JWTs shaped like Cognito's, and their verification.

The key pair is generated once and kept in the state directory (`issuer-key.pem`), so tokens
outlive restarts. Tokens carry the issuer and audience that template.yaml's JWT authorizer
names (resolved for the local stack), so the gateway checks them exactly as API Gateway
checks Cognito's: signature (RS256, key id), expiry and not-before, issuer, audience (or
`client_id` for access tokens).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from inktex.errors import InkTeXError

KEY_FILE = "issuer-key.pem"
_SUB_NAMESPACE = uuid.UUID("6f1c1d4e-8f0b-4f55-9a41-2b8f5f1b9e0d")


class TokenError(InkTeXError):
    """A bearer token that the authorizer refuses; the message says why."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def subject_of(username: str) -> str:
    """A user's stable `sub` (a UUID, as Cognito's are), the same on every restart."""
    return str(uuid.uuid5(_SUB_NAMESPACE, username))


@dataclass
class Issuer:
    key: rsa.RSAPrivateKey
    issuer: str
    audience: str  # the app client id

    @classmethod
    def load(cls, state_dir: Path, issuer: str, audience: str) -> Issuer:
        path = Path(state_dir) / KEY_FILE
        if path.is_file():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            path.chmod(0o600)
        return cls(key=key, issuer=issuer, audience=audience)

    @property
    def kid(self) -> str:
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        digest = hashes.Hash(hashes.SHA256())
        digest.update(der)
        return _b64(digest.finalize()[:12])

    def jwks(self) -> dict:
        numbers = self.key.public_key().public_numbers()

        def as_b64(n: int) -> str:
            return _b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))

        return {
            "keys": [
                {
                    "kty": "RSA",
                    "alg": "RS256",
                    "use": "sig",
                    "kid": self.kid,
                    "n": as_b64(numbers.n),
                    "e": as_b64(numbers.e),
                }
            ]
        }

    def sign(self, claims: dict) -> str:
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        signing_input = ".".join(
            _b64(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        )
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(signature)}"

    def id_token(
        self,
        username: str,
        ttl_s: int = 3600,
        groups: list[str] | None = None,
        now: float | None = None,
    ) -> str:
        """A Cognito-shaped ID token for `username` (its audience is the app client)."""
        return self._token(
            username,
            ttl_s,
            groups,
            now,
            {
                "cognito:username": username,
                "email": username if "@" in username else f"{username}@localhost",
                "email_verified": True,
                "aud": self.audience,
                "token_use": "id",
            },
        )

    def access_token(self, username: str, ttl_s: int = 3600, groups: list[str] | None = None):
        """A Cognito-shaped access token (it names the app client in `client_id`)."""
        return self._token(
            username,
            ttl_s,
            groups,
            None,
            {
                "username": username,
                "client_id": self.audience,
                "token_use": "access",
                "scope": "openid email profile",
            },
        )

    def _token(self, username, ttl_s, groups, now, kind_claims: dict) -> str:
        now = int(time.time() if now is None else now)
        claims = {
            "sub": subject_of(username),
            **kind_claims,
            "iss": self.issuer,
            "auth_time": now,
            "iat": now,
            "exp": now + ttl_s,
            "jti": str(uuid.uuid4()),
        }
        if groups:
            claims["cognito:groups"] = list(groups)
        return self.sign(claims)

    def verify(self, token: str, issuer: str, audience: list[str], now: float | None = None):
        """The token's claims, checked as API Gateway's JWT authorizer checks them."""
        try:
            head_b64, body_b64, sig_b64 = token.split(".")
            header = json.loads(_unb64(head_b64))
            claims = json.loads(_unb64(body_b64))
            signature = _unb64(sig_b64)
        except ValueError as exc:
            raise TokenError("the token is not a JWT") from exc
        if header.get("alg") != "RS256" or header.get("kid") != self.kid:
            raise TokenError("the token is not signed by this issuer's key")
        try:
            self.key.public_key().verify(
                signature,
                f"{head_b64}.{body_b64}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature as exc:
            raise TokenError("the token's signature is invalid") from exc
        now = time.time() if now is None else now
        if not isinstance(claims.get("exp"), int | float) or claims["exp"] <= now:
            raise TokenError("the token has expired")
        if isinstance(claims.get("nbf"), int | float) and claims["nbf"] > now:
            raise TokenError("the token is not valid yet")
        if claims.get("iss") != issuer:
            raise TokenError("the token's issuer is not the authorizer's")
        aud = claims.get("aud", claims.get("client_id"))
        auds = aud if isinstance(aud, list) else [aud]
        if not set(auds) & set(audience):
            raise TokenError("the token's audience is not the authorizer's")
        return claims


def gateway_claims(claims: dict) -> dict[str, str]:
    """Claims as an HTTP API puts them in requestContext.authorizer.jwt.claims: strings, with
    lists as "[a b]" and booleans as "true"/"false"."""
    out = {}
    for key, value in claims.items():
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, list):
            out[key] = "[" + " ".join(str(v) for v in value) + "]"
        else:
            out[key] = str(value)
    return out
