"""Every ``ACRVPC_*`` setting of the product, in one pydantic-settings model (issue 19).

:func:`settings` returns the current values. It reads the environment each time it is called and
keeps the last model while the ``ACRVPC_*`` variables stay the same, so a value changed at run time
(``monkeypatch.setenv``, the demo setting ``ACRVPC_SANDBOX_URL``) is seen by the next read, as the
per-call ``os.environ`` reads this replaces did. ``ACRVPC_RETRY_DELAYS`` is still read once, when
:mod:`acrvpc.cloud.errors` is imported (Prefect's task options are fixed there).

A variable set to an empty string counts as unset; surrounding blanks are ignored (except in the
secrets, which are passed on as given). A bad value raises :class:`SettingsError` (a ``ValueError``)
naming the variable, the value (never a secret's) and the fix, before anything is created.

The README's "Settings" table is checked against :class:`Settings` by tests/unit/test_settings.py.
This module imports pydantic and pydantic-settings only: no Prefect, no SDK.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PREFIX = "ACRVPC_"
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_QPS_FIX = "write a number of calls per second (0 for no limit)"
_BURST_FIX = "write a number of calls (0 or unset: half of the calls per second, at least 1)"


def _qps(product: str) -> Any:
    return Field(
        20.0,
        ge=0,
        description=f"Client-side rate limit of {product} API calls per second, per process "
        "(and the shared limit's rate); 0 turns the limit off.",
        json_schema_extra={"fix": _QPS_FIX},
    )


def _burst(product: str) -> Any:
    return Field(
        None,
        ge=0,
        description=f"How many {product} API calls may go at once under the rate limit "
        "(default: half of the calls per second, at least 1).",
        json_schema_extra={"fix": _BURST_FIX},
    )


class Settings(BaseSettings):
    """The ``ACRVPC_*`` environment variables (field ``qps_ecs`` is ``ACRVPC_QPS_ECS``)."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_ignore_empty=True, extra="ignore", hide_input_in_errors=True, validate_default=False
    )

    # -- retries ---------------------------------------------------------------------------------------
    retry_delays: Annotated[list[Annotated[float, Field(ge=0)]], NoDecode] = Field(
        [1.0, 2.0, 4.0, 8.0],
        min_length=1,
        description="Prefect task retry delays in seconds, comma-separated; their count is the number of task "
        "retries (50% jitter). Read once, when the tasks are imported.",
        json_schema_extra={"fix": "write one or more comma-separated non-negative seconds, e.g. 1,2,4,8"},
    )
    call_retries: int = Field(
        3,
        ge=0,
        description="In-place retries of one Alibaba Cloud or GitLab call that is safe to repeat "
        "(0 turns them off); read at each call.",
        json_schema_extra={"fix": "write a whole number of retries, e.g. 3 (0 turns them off)"},
    )
    # -- rate limits -----------------------------------------------------------------------------------
    qps_cr: float = _qps("Container Registry (CR)")
    qps_ecs: float = _qps("ECS")
    qps_vpc: float = _qps("VPC")
    burst_cr: float | None = _burst("Container Registry (CR)")
    burst_ecs: float | None = _burst("ECS")
    burst_vpc: float | None = _burst("VPC")
    qps_limit_prefix: str = Field(
        "acrvpc",
        pattern=_NAME_PATTERN,
        description="Prefix of the Prefect global concurrency limits that share the API quota across processes "
        "(`<prefix>-qps-<product>-<region>`); one prefix per Alibaba Cloud account on one server.",
        json_schema_extra={
            "fix": "use letters, digits, '-', '_' or '.' (e.g. ACRVPC_QPS_LIMIT_PREFIX=acct-prod), "
            "one prefix per Alibaba Cloud account"
        },
    )
    qps_lease: int = Field(
        5,
        ge=1,
        description="The most calls one acquisition of the shared limit may cover (1 = one round trip "
        "to the Prefect server per call).",
        json_schema_extra={"fix": "write a whole number of calls >= 1 (1 = one round trip per call)"},
    )
    quota_broker: str | None = Field(
        None,
        description="Unix socket of the per-host quota broker that gives this process's Alibaba Cloud calls "
        "their turn under the shared limits (set by the acrvpc-process worker for its runs; unset: each "
        "process reserves on the Prefect server itself).",
        json_schema_extra={
            "fix": "leave it unset (the acrvpc-process worker sets it for its runs) or write the path of the "
            "worker's broker socket"
        },
    )
    # -- sandbox and credentials -------------------------------------------------------------------------
    sandbox_url: str | None = Field(
        None,
        description="Base URL of a sandbox (http://127.0.0.1:N): every Alibaba Cloud and GitLab call goes "
        "there, with the sandbox's credentials. Unset: the real cloud.",
        json_schema_extra={"fix": "write the sandbox's base URL, e.g. http://127.0.0.1:8000"},
    )
    sandbox_access_key_id: str | None = Field(
        None,
        description="AccessKey id sent to the sandbox (default: the sandbox's built-in one).",
        json_schema_extra={"fix": "write an AccessKey id"},
    )
    sandbox_access_key_secret: SecretStr | None = Field(
        None, description="AccessKey secret sent to the sandbox (default: the sandbox's built-in one)."
    )
    gitlab_token: SecretStr | None = Field(
        None,
        description="GitLab personal access token (api scope); wins over the spec's gitlab.token_block "
        "(a GitLab Credentials or Secret block).",
    )
    webhook_secret: SecretStr | None = Field(
        None,
        description="Secret GitLab sends in X-Gitlab-Token with each delivery; wins over the Secret block "
        "webhook.secret_block.",
    )
    webhook_signing_secret: SecretStr | None = Field(
        None,
        description="GitLab's webhook signing token (whsec_ + base64 of 32 bytes); wins over the Secret "
        "block webhook.signing_secret_block.",
    )
    # -- the acrvpc-process worker (acrvpc/warm_worker.py) -----------------------------------------------
    warm_pool_size: int = Field(
        1,
        ge=0,
        description="acrvpc-process worker: 0 starts every run cold (Prefect's process worker); any other "
        "value forks runs from a pre-imported zygote per environment.",
        json_schema_extra={"fix": "write a whole number, e.g. 1 (0 starts every run cold)"},
    )
    warm_imports: str | None = Field(
        None,
        description="acrvpc-process worker: comma-separated modules the zygote imports before forking "
        "(default: the project's flows, the three Alibaba Cloud SDK clients and python-gitlab).",
        json_schema_extra={"fix": "write comma-separated module names, e.g. flows.on_push,flows.vpc_build"},
    )
    warm_start_slots: int | None = Field(
        None,
        ge=0,
        description="acrvpc-process worker: runs of one zygote that may be starting at once (forked, not yet "
        "Running); the others wait their turn (unset: the host's CPU count; 0: no limit).",
        json_schema_extra={"fix": "write a whole number, e.g. 2 (0 lets every run start at once)"},
    )
    warm_start_seconds: float = Field(
        10.0,
        gt=0,
        description="acrvpc-process worker: a starting run keeps its start slot at most this long (a flow without "
        "the project's on_running hook never says it is Running).",
        json_schema_extra={"fix": "write a number of seconds, e.g. 10"},
    )
    warm_wait_seconds: float = Field(
        60.0,
        ge=0,
        description="acrvpc-process worker: how long a run waits for its zygote before starting cold.",
        json_schema_extra={"fix": "write a number of seconds, e.g. 60"},
    )
    worker_share: bool = Field(
        True,
        description="acrvpc-process worker: try only this worker's share of the pool's runs, and the others' once "
        "overdue (acrvpc/pool_share.py); false on every worker of a pool whose workers poll different work queues.",
        json_schema_extra={"fix": "write true or false"},
    )

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, data: Any) -> Any:
        """Strip the values; a blank one means the default (secrets are left as given, an empty one is unset)."""
        if not isinstance(data, dict):
            return data
        cleaned = {}
        for key, value in data.items():
            if isinstance(value, str) and key in cls.model_fields and not _is_secret(key):
                value = value.strip()
                if not value:
                    continue
            cleaned[key] = value
        return cleaned

    @field_validator("retry_delays", mode="before")
    @classmethod
    def _split_delays(cls, value: Any) -> Any:
        return [part for part in value.split(",") if part.strip()] if isinstance(value, str) else value


class SettingsError(ValueError):
    """One or more ``ACRVPC_*`` variables hold a bad value: the message names each and its fix."""


def env_name(field: str) -> str:
    """The environment variable of a field: ``qps_ecs`` -> ``ACRVPC_QPS_ECS``."""
    return PREFIX + field.upper()


def _is_secret(field: str) -> bool:
    annotation = Settings.model_fields[field].annotation
    return annotation is SecretStr or SecretStr in getattr(annotation, "__args__", ())


def _translate(exc: ValidationError) -> SettingsError:
    problems = []
    for error in exc.errors(include_input=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        info = Settings.model_fields.get(field)
        if info is None:
            problems.append(error["msg"])
            continue
        name = env_name(field)
        raw = os.environ.get(name)  # the value as set (pydantic may hold only a part of it)
        if raw is None:  # set in another case (the names are case-insensitive)
            raw = next((v for k, v in os.environ.items() if k.upper() == name), "")
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        fix = extra.get("fix") or error["msg"]
        shown = "" if _is_secret(field) else f"={raw.strip()!r}"
        problem = f"{name}{shown}: {fix}"
        if problem not in problems:
            problems.append(problem)
    return SettingsError("; ".join(problems))


def _snapshot() -> tuple[tuple[str, str], ...]:
    for _ in range(5):  # another thread may set a variable while we look
        try:
            return tuple(sorted((k, v) for k, v in os.environ.items() if k[: len(PREFIX)].upper() == PREFIX))
        except RuntimeError:
            continue
    return tuple(sorted((k, v) for k, v in dict(os.environ).items() if k[: len(PREFIX)].upper() == PREFIX))


_last: tuple[tuple[tuple[str, str], ...], Settings] | None = None


def settings() -> Settings:
    """The current ``ACRVPC_*`` settings (the same object while those variables do not change).

    Raises:
        SettingsError: a variable holds a bad value (the message names it and the fix).
    """
    global _last
    key = _snapshot()
    last = _last
    if last is not None and last[0] == key:
        return last[1]
    try:
        current = Settings()
    except ValidationError as exc:
        raise _translate(exc) from None
    _last = (key, current)
    return current


def secret_value(secret: SecretStr | None) -> str:
    """A secret setting's value, or ``""`` when unset."""
    return secret.get_secret_value() if secret is not None else ""


def _type_text(field: str) -> str:
    annotation = Settings.model_fields[field].annotation
    args = set(getattr(annotation, "__args__", ())) - {type(None)}
    base = next(iter(args)) if args else annotation
    if _is_secret(field):
        return "secret"
    if field == "retry_delays":
        return "comma-separated seconds"
    names: dict[object, str] = {int: "whole number", float: "number", str: "text", bool: "true or false"}
    return names.get(base, str(base))


def _default_text(field: str) -> str:
    default = Settings.model_fields[field].default
    if default is None:
        return "unset"
    if isinstance(default, list):
        return ",".join(f"{d:g}" for d in default)
    if isinstance(default, bool):
        return str(default).lower()
    return f"{default:g}" if isinstance(default, float) else str(default)


def markdown_table() -> str:
    """The README's table of settings, one row per field (``python -m acrvpc.settings`` prints it)."""
    rows = ["| Variable | Type | Default | What it does |", "|---|---|---|---|"]
    for field, info in Settings.model_fields.items():
        secret = " **Secret**: never logged or shown." if _is_secret(field) else ""
        default = _default_text(field)
        rows.append(
            f"| `{env_name(field)}` | {_type_text(field)} | {default if default == 'unset' else f'`{default}`'} | "
            f"{info.description}{secret} |"
        )
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
