"""What stands between the network and the webhook receiver's parser: signatures, rate limits, secrets.

- :class:`SignatureCheck`: GitLab's signed deliveries (GitLab >= 19 signing tokens, the Standard
  Webhooks scheme): ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` (``v1,<base64
  HMAC-SHA256 of "{id}.{timestamp}.{body}">``, several space-separated during a key rotation),
  verified with the maintained ``standardwebhooks`` library over the raw body bytes, within a
  replay window (the library's own tolerance is 5 minutes; a shorter window is checked here first).
- :class:`SourceLimiter`: a moving-window rate limit per source address with the ``limits``
  library (in memory: one receiver process). ``X-Forwarded-For`` is honoured only when the peer is
  a configured trusted proxy: its entries are read from the right, skipping trusted proxies, and
  the first other address is the source.
- :func:`normalize_secret`: the X-Gitlab-Token secret as GitLab sends it.

Resent deliveries are recognised by the receiver's spool (:mod:`deployments.webhook_spool`), signed
or not.

Assumptions:
- GitLab sends ``webhook-id`` and ``webhook-timestamp`` on every delivery and ``webhook-signature``
  only when the hook has a signing token; ``webhook-id`` equals the ``Idempotency-Key`` header
  (GitLab MR 230944). When a signing token is configured here, a delivery without a signature is
  refused, whatever else it carries.
"""

from __future__ import annotations

import base64
import ipaddress
import math
import time
from collections.abc import Callable, Mapping

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from standardwebhooks import Webhook, WebhookVerificationError

SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
SECRET_SPACE = " \t\r\n\v\f"
MAX_ID_LENGTH = 256
MAX_SIGNATURE_LENGTH = 4096

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def normalize_secret(secret: str) -> str:
    """The X-Gitlab-Token value GitLab sends for a hook whose secret token is ``secret``.

    GitLab removes the line breaks from the token before sending it (``WebHookService``:
    ``Gitlab::Utils.remove_line_breaks(hook.token)``), and HTTP drops the spaces and tabs around a
    header value. A secret saved with a trailing newline (``echo`` into a file, a Secret block pasted
    with one) is therefore compared, and registered, as GitLab will send it.
    """
    return secret.replace("\r\n", "").replace("\n", "").strip(SECRET_SPACE)


class SignatureCheck:
    """Verifies Standard Webhooks signatures with one signing key and a replay window.

    Args:
        signing_secret: the ``whsec_...`` token GitLab signs with.
        window_s: how far (seconds) ``webhook-timestamp`` may be from now, either way.
        clock: seconds since the epoch (``time.time``).

    Raises:
        ValueError: the token is not ``whsec_`` + base64.
    """

    def __init__(self, signing_secret: str, window_s: float, clock: Callable[[], float] = time.time) -> None:
        try:
            key = base64.b64decode(signing_secret.strip().removeprefix("whsec_"), validate=True)
        except ValueError:
            key = b""
        if not key:
            raise ValueError("the signing token is not whsec_ followed by base64 (as GitLab shows it)")
        self._webhook = Webhook(key)
        self.window_s, self.clock = window_s, clock

    def precheck(self, headers: Mapping[str, str]) -> str | None:
        """Why the signature headers alone refuse the delivery (before its body is read), or None."""
        delivery, stamp, signature = (headers.get(name, "") for name in SIGNATURE_HEADERS)
        if not (delivery and stamp and signature):
            return "missing webhook-id, webhook-timestamp or webhook-signature (the hook's signing token)"
        if len(delivery) > MAX_ID_LENGTH or len(signature) > MAX_SIGNATURE_LENGTH:
            return "webhook-id or webhook-signature is too long"
        try:
            when = float(stamp)
        except ValueError:
            return "webhook-timestamp is not a number of seconds"
        if not math.isfinite(when) or abs(self.clock() - when) > self.window_s:
            return f"webhook-timestamp is more than {self.window_s:g} s from now (a replay, or a clock off)"
        return None

    def verify(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        """Why the signature does not match ``body`` (or the headers refuse it), or None when it is valid."""
        reason = self.precheck(headers)
        if reason:
            return reason
        try:
            self._webhook.verify(body, {name: headers[name] for name in SIGNATURE_HEADERS}, json_parse=False)
        except (WebhookVerificationError, ValueError):  # ValueError: undecodable body, malformed signature list
            return "webhook-signature does not match (wrong signing token, or the body was changed)"
        return None


class SourceLimiter:
    """A moving-window rate limit per source address.

    Args:
        limit: e.g. ``60/minute`` (``limits`` notation).
        trusted_proxies: networks whose ``X-Forwarded-For`` is believed.
        clock: seconds since the epoch, for ``Retry-After``.
    """

    def __init__(
        self, limit: str, trusted_proxies: list[str] | tuple[str, ...] = (), clock: Callable[[], float] = time.time
    ) -> None:
        self.item = parse(limit)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._proxies: list[Network] = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]
        self.clock = clock

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._proxies)

    def source(self, peer: str | None, forwarded_for: str | None) -> str:
        """The delivery's source: the peer, or (behind a trusted proxy) the nearest untrusted forwarded address."""
        peer = peer or "unknown"
        if not forwarded_for or not self._trusted(peer):
            return peer
        for hop in reversed([part.strip() for part in forwarded_for.split(",")][-32:]):
            try:
                address = str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # a malformed chain: fall back to the one address we know
            if not self._trusted(address):
                return address
        return peer

    def hit(self, source: str) -> float | None:
        """Count one delivery from ``source``: None when allowed, else the seconds until one would be."""
        if self._limiter.hit(self.item, source):
            return None
        reset = self._limiter.get_window_stats(self.item, source).reset_time
        return max(1.0, math.ceil(reset - self.clock()))
