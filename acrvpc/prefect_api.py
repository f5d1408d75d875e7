"""Where the Prefect API is, from Prefect's own settings (environment, profile, ``prefect config set``)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

_ENV_KEYS = ("PREFECT_API_URL", "PREFECT_PROFILE", "PREFECT_HOME", "PREFECT_PROFILES_PATH")
_cache: tuple[Any, tuple[str | None, ...], float, str | None] | None = None  # (settings, env, expires, url)
_cache_lock = threading.Lock()
_read_lock = threading.Lock()  # one Settings() at a time: callers that arrive meanwhile reuse its answer


def api_url(max_age: float = 0.0) -> str | None:
    """The Prefect API URL the settings name now, or None when there is none (Prefect's ephemeral mode).

    Read afresh (``Settings()``: the environment, the active profile, ``prefect.toml``), then from the
    current settings context (``temporary_settings``), so a URL set with ``prefect config set`` or a
    profile counts as much as ``PREFECT_API_URL`` in the environment. In a flow-run process started by a
    worker (``PREFECT__FLOW_RUN_ID`` set), the current settings context's URL, the one the run's own
    client uses, when it names one.

    Args:
        max_age: seconds an answer may be reused (0: read afresh). ``Settings()`` costs ~19 ms of
            CPU; the rate limiter asks before every Alibaba Cloud call and passes its re-check
            interval. A reused answer is dropped at once when the settings context (a
            ``temporary_settings`` block) or ``PREFECT_API_URL``, ``PREFECT_PROFILE``,
            ``PREFECT_HOME`` or ``PREFECT_PROFILES_PATH`` in the environment changed; an edited
            profiles file is noticed after ``max_age``.
    """
    global _cache
    from acrvpc.lazy_prefect import api_url_surely_unset

    if api_url_surely_unset():  # known without importing Prefect (1.5 s): `acrvpc preflight` on a laptop
        return None
    from prefect.settings import Settings, get_current_settings

    current = get_current_settings()
    if os.environ.get("PREFECT__FLOW_RUN_ID") and current.api.url:
        # A flow-run process a worker started: its settings were read when it started, and its own client
        # reports to this URL; the limits live there (no Settings() per run: ~40 ms of a forked run's CPU).
        return str(current.api.url)
    env = tuple(os.environ.get(k) for k in _ENV_KEYS)

    def reusable() -> tuple[bool, str | None]:
        with _cache_lock:
            cached = _cache
        if cached is not None and cached[0] is current and cached[1] == env and time.monotonic() < cached[2]:
            return True, cached[3]
        return False, None

    if max_age > 0 and (found := reusable())[0]:
        return found[1]
    # The preflight's concurrent reads all ask at the start of a run: without the lock each built its own
    # Settings() (~20 ms of CPU each, 5-6 per forked flow-run process, issue 15).
    with _read_lock:
        if max_age > 0 and (found := reusable())[0]:
            return found[1]
        raw = Settings().api.url or current.api.url
        url = str(raw) if raw else None
        with _cache_lock:
            _cache = (current, env, time.monotonic() + max_age, url)
    return url


def forget_api_url() -> None:
    """Drop the reused answer of :func:`api_url` (the next call reads the settings afresh)."""
    global _cache
    with _cache_lock:
        _cache = None


class _SharedContexts:
    """``ssl`` as Prefect's client module sees it, with ``create_default_context`` built once per arguments."""

    def __init__(self, ssl_module: Any) -> None:
        import functools

        self._ssl = ssl_module
        self.create_default_context = functools.lru_cache(maxsize=8)(ssl_module.create_default_context)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ssl, name)


def share_client_ssl_contexts(warm: bool = False) -> bool:
    """Prefect's API clients in this process share their SSL context instead of building one each.

    Prefect 3.9 builds an SSL context for every ``PrefectClient``/``SyncPrefectClient`` it creates
    (``ssl.create_default_context(cafile=certifi.where())``: parsing the CA bundle, ~30 ms of CPU), even
    for an ``http://`` API, and a flow run creates about ten (the flow run's, the deployment's pull
    step, its event, the log and events services, the suspension observer...): measured with py-spy
    in forked runs of the acrvpc-process worker, 40 % of a run's CPU (issue 15). One context per
    arguments is built instead: the CA file (``PREFECT_API_SSL_CERT_FILE`` or certifi's) or none (the
    ``PREFECT_API_TLS_INSECURE_SKIP_VERIFY`` branch, which always makes the same change to it), so
    verification is what each client would have had. An ``SSLContext`` may be shared by clients and
    threads (httpx recommends it). Only Prefect's client module sees the shared function; nothing else
    in the process changes. Returns False when the module has no ``ssl`` to share (another Prefect).

    Args:
        warm: build now the context a verifying client of this process's settings asks for (a fork
            server does, so that its forked runs inherit it).
    """
    import ssl

    import prefect.client.orchestration as orchestration

    current = getattr(orchestration, "ssl", None)
    if not isinstance(current, _SharedContexts):
        if current is not ssl:
            return False
        current = orchestration.ssl = _SharedContexts(ssl)  # type: ignore[assignment]
    if warm:
        import certifi
        from prefect.settings import PREFECT_API_SSL_CERT_FILE

        # the arguments PrefectClient.__init__ passes (the insecure-skip-verify branch is built on first use)
        current.create_default_context(cafile=PREFECT_API_SSL_CERT_FILE.value() or certifi.where())
    return True
