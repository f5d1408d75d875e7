"""Prefect's API clients share one SSL context per CA file (acrvpc.prefect_api.share_client_ssl_contexts, issue 15).

Each test runs in a fresh interpreter: the function changes what Prefect's client module sees for the
rest of the process. The real clients are built (no request is sent) and their httpx transports inspected.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT

PROBE = r"""
import json, ssl, sys
from prefect.client.orchestration import PrefectClient, SyncPrefectClient
from prefect.settings import PREFECT_API_TLS_INSECURE_SKIP_VERIFY, temporary_settings
warmed = None
if sys.argv[1] == "shared":
    import prefect.client.orchestration as orchestration
    from acrvpc.prefect_api import share_client_ssl_contexts
    assert share_client_ssl_contexts(warm=True) and share_client_ssl_contexts()  # idempotent
    warmed = orchestration.ssl.create_default_context.cache_info().currsize  # built before any client

def context(client):
    http = getattr(client, "_client")
    return http._transport._pool._ssl_context

def ids(*clients):
    return [id(context(c)) for c in clients]

a, b = PrefectClient("http://127.0.0.1:9/api"), PrefectClient("https://127.0.0.1:9/api")
c = SyncPrefectClient("http://127.0.0.1:9/api")
with temporary_settings({PREFECT_API_TLS_INSECURE_SKIP_VERIFY: True}):
    d, e = PrefectClient("https://127.0.0.1:9/api"), PrefectClient("https://127.0.0.1:9/api")
f = PrefectClient("https://127.0.0.1:9/api")
print(json.dumps({
    "secure": ids(a, b, c, f),
    "insecure": ids(d, e),
    "secure_modes": [context(x).verify_mode == ssl.CERT_REQUIRED and context(x).check_hostname for x in (a, b, c, f)],
    "insecure_modes": [context(x).verify_mode == ssl.CERT_NONE and not context(x).check_hostname for x in (d, e)],
    "module_ssl_create": ssl.create_default_context.__module__,
    "warmed": warmed,
}))
"""


def probe(mode: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_clients_share_one_context_per_ca_file_and_keep_their_verification():
    seen = probe("shared")
    assert len(set(seen["secure"])) == 1, "every verifying client should reuse one context"
    assert len(set(seen["insecure"])) == 1
    assert set(seen["secure"]) != set(seen["insecure"]), "the insecure context must never serve a verifying client"
    assert all(seen["secure_modes"]), "verifying clients check certificates and host names"
    assert all(seen["insecure_modes"])
    assert seen["module_ssl_create"] == "ssl", "the ssl module itself is left alone"
    assert seen["warmed"] == 1, "warm=True builds the verifying clients' context before any client"


def test_without_it_prefect_builds_a_context_per_client():
    """The cost the function removes: Prefect 3.9 builds a context for each client (if this fails, Prefect
    changed and the function may no longer be needed)."""
    seen = probe("plain")
    assert len(set(seen["secure"])) == 4
