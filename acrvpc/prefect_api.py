"""Where the Prefect API is, from Prefect's own settings (environment, profile, ``prefect config set``)."""

from __future__ import annotations


def api_url() -> str | None:
    """The Prefect API URL the settings name now, or None when there is none (Prefect's ephemeral mode).

    Read afresh (``Settings()``: the environment, the active profile, ``prefect.toml``), then from the
    current settings context (``temporary_settings``), so a URL set with ``prefect config set`` or a
    profile counts as much as ``PREFECT_API_URL`` in the environment.
    """
    from acrvpc.lazy_prefect import api_url_surely_unset

    if api_url_surely_unset():  # known without importing Prefect (1.5 s): `acrvpc preflight` on a laptop
        return None
    from prefect.settings import Settings, get_current_settings

    url = Settings().api.url or get_current_settings().api.url
    return str(url) if url else None
