"""Verification of Alibaba Cloud request signatures.

Two schemes, as the tea-openapi SDK sends them:

* V3 ``ACS3-HMAC-SHA256`` (the SDK default, also for RPC actions): parameters in the query,
  ``Authorization: ACS3-HMAC-SHA256 Credential=<AK>,SignedHeaders=<h;..>,Signature=<hex>``.
* V1 ``HMAC-SHA1`` (``Config.signature_algorithm='v2'``): ``Signature`` in the query.

The canonical forms follow tea-openapi 0.4.6 ``utils.py`` byte for byte; the vectors in
``tests/fixtures/signed-requests.json`` were captured from the real SDKs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote

from .errors import (
    IncompleteSignature,
    InvalidAccessKeyIdNotFound,
    InvalidTimeStampExpired,
    SignatureDoesNotMatch,
    SignatureNonceUsed,
)

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
SecretLookup = Callable[[str], "str | None"]


def _canonical_query(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{k}={quote(v, safe='~')}" for k, v in sorted(pairs, key=lambda kv: kv[0]))


def string_to_sign_v3(
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    signed_headers: list[str],
    body: bytes,
    algorithm: str = "ACS3-HMAC-SHA256",
) -> str:
    canonical_headers = "".join(f"{h}:{headers.get(h, '').strip()}\n" for h in signed_headers)
    payload_hash = headers.get("x-acs-content-sha256") or hashlib.sha256(body).hexdigest()
    canonical_request = "\n".join(
        [
            method.upper(),
            path or "/",
            _canonical_query(query),
            canonical_headers,
            ";".join(signed_headers),
            payload_hash,
        ]
    )
    return f"{algorithm}\n{hashlib.sha256(canonical_request.encode()).hexdigest()}"


def parse_authorization(value: str) -> tuple[str, str, list[str], str]:
    """``ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=a;b,Signature=hex`` -> parts."""
    try:
        algorithm, rest = value.strip().split(" ", 1)
        fields = dict(part.strip().split("=", 1) for part in rest.split(","))
        return algorithm, fields["Credential"], fields["SignedHeaders"].split(";"), fields["Signature"]
    except (ValueError, KeyError):
        raise IncompleteSignature() from None


class SignatureVerifier:
    """Checks a request's signature against the sandbox's credentials.

    Args:
        secret_for: maps an AccessKey id to its secret (``None`` when unknown).
        replay_protection: also refuse a reused ``x-acs-signature-nonce`` and a date more
            than 15 minutes off. Off, captured requests verify as they were signed.
    """

    MAX_SKEW_SECONDS = 15 * 60

    def __init__(self, secret_for: SecretLookup, replay_protection: bool = True) -> None:
        self.secret_for = secret_for
        self.replay_protection = replay_protection
        self._nonces: set[str] = set()

    def verify(self, method: str, path: str, raw_query: str, headers: dict[str, str], body: bytes) -> str:
        """Verify one request and return its AccessKey id, or raise the real error."""
        headers = {k.lower(): v for k, v in headers.items()}
        query = parse_qsl(raw_query, keep_blank_values=True)
        if "authorization" in headers:
            ak = self._verify_v3(method, path, query, headers, body)
            nonce, date = headers.get("x-acs-signature-nonce", ""), headers.get("x-acs-date", "")
        elif any(k == "Signature" for k, _ in query):
            ak = self._verify_v1(method, query)
            params = dict(query)
            nonce, date = params.get("SignatureNonce", ""), params.get("Timestamp", "")
        else:
            raise IncompleteSignature("The request is not signed: no Authorization header and no Signature.")
        if self.replay_protection:
            self._check_replay(nonce, date)
        return ak

    def _secret(self, access_key_id: str) -> str:
        secret = self.secret_for(access_key_id)
        if secret is None:
            raise InvalidAccessKeyIdNotFound()
        return secret

    def _verify_v3(
        self, method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str], body: bytes
    ) -> str:
        algorithm, ak, signed, signature = parse_authorization(headers["authorization"])
        if algorithm != "ACS3-HMAC-SHA256":
            raise IncompleteSignature(f"Unsupported signature algorithm {algorithm}.")
        required = {
            "host",
            "x-acs-action",
            "x-acs-version",
            "x-acs-date",
            "x-acs-signature-nonce",
            "x-acs-content-sha256",
        }
        if not required <= set(signed):
            raise IncompleteSignature("All x-acs-* headers and host must be signed.")
        if headers.get("x-acs-content-sha256", EMPTY_SHA256) != hashlib.sha256(body).hexdigest():
            raise SignatureDoesNotMatch()
        secret = self._secret(ak)
        to_sign = string_to_sign_v3(method, path, query, headers, signed, body, algorithm)
        expected = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise SignatureDoesNotMatch(to_sign)
        return ak

    def _verify_v1(self, method: str, query: list[tuple[str, str]]) -> str:
        params = dict(query)
        ak = params.get("AccessKeyId", "")
        signature = params.get("Signature", "")
        secret = self._secret(ak)
        canonical = "&".join(
            f"{quote(k, safe='~')}={quote(v, safe='~')}"
            for k, v in sorted((kv for kv in query if kv[0] != "Signature"), key=lambda kv: kv[0])
        )
        to_sign = f"{method.upper()}&%2F&{quote(canonical, safe='~')}"
        expected = base64.b64encode(hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()).decode()
        if not hmac.compare_digest(expected, signature):
            raise SignatureDoesNotMatch(to_sign)
        return ak

    def _check_replay(self, nonce: str, date: str) -> None:
        if date:
            try:
                when = datetime.strptime(date, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            except ValueError:
                raise InvalidTimeStampExpired("Specified time stamp or date value is not well formatted.") from None
            if abs((datetime.now(UTC) - when).total_seconds()) > self.MAX_SKEW_SECONDS:
                raise InvalidTimeStampExpired()
        if nonce:
            if nonce in self._nonces:
                raise SignatureNonceUsed()
            self._nonces.add(nonce)
