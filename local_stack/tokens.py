"""The local development issuer: RS256 JWTs shaped like Cognito's, and their verification.

The key pair is generated once and kept in the state directory (`issuer-key.pem`, readable
by its owner only), so tokens outlive restarts. Tokens carry the issuer and audience that
template.yaml's JWT authorizer names (resolved for the local stack), so the gateway checks
them as API Gateway checks Cognito's: signature (RS256, key id), expiry and not-before,
issuer, audience (or `client_id` for access tokens). Signing and verifying are PyJWT's;
what is here is Cognito's shape and API Gateway's rules.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from jwt.utils import base64url_encode

from inktex.errors import InkTeXError

KEY_FILE = "issuer-key.pem"
ALGORITHM = "RS256"
_SUB_NAMESPACE = uuid.UUID("6f1c1d4e-8f0b-4f55-9a41-2b8f5f1b9e0d")


class TokenError(InkTeXError):
    """A bearer token that the authorizer refuses; the message says why."""


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
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            # created owner-only: never readable by others, not even for a moment
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
        return cls(key=key, issuer=issuer, audience=audience)

    @property
    def kid(self) -> str:
        """The key's id: the first 12 bytes of its public key's SHA-256, base64url."""
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        digest = hashes.Hash(hashes.SHA256())
        digest.update(der)
        return base64url_encode(digest.finalize()[:12]).decode()

    def jwks(self) -> dict:
        """The public key as a JWK Set, as Cognito publishes it at /.well-known/jwks.json."""
        jwk = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        public = {name: jwk[name] for name in ("kty", "n", "e")}  # Cognito's fields, no key_ops
        return {"keys": [{**public, "alg": ALGORITHM, "use": "sig", "kid": self.kid}]}

    def sign(self, claims: dict) -> str:
        return jwt.encode(claims, self.key, algorithm=ALGORITHM, headers={"kid": self.kid})

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

    def verify(self, token: str, issuer: str, audience: list[str]) -> dict:
        """The token's claims, checked as API Gateway's JWT authorizer checks them."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise TokenError("the token is not a JWT") from exc
        if header.get("alg") != ALGORITHM or header.get("kid") != self.kid:
            raise TokenError("the token is not signed by this issuer's key")
        try:
            claims = jwt.decode(
                token,
                self.key.public_key(),
                algorithms=[ALGORITHM],
                issuer=issuer,
                # API Gateway takes `client_id` for an access token's audience: checked below
                options={"require": ["exp", "iss"], "verify_aud": False},
            )
        except jwt.InvalidSignatureError as exc:
            raise TokenError("the token's signature is invalid") from exc
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("the token has expired") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError(f"the token has no {exc.claim!r} claim") from exc
        except jwt.ImmatureSignatureError as exc:
            raise TokenError("the token is not valid yet") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenError("the token's issuer is not the authorizer's") from exc
        except jwt.InvalidTokenError as exc:
            raise TokenError(f"the token is invalid: {exc}") from exc
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
