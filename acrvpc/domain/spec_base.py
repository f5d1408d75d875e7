"""What every spec section shares: the strict, frozen pydantic base and the project-path check.

Kept apart from :mod:`acrvpc.domain.spec` so that section modules (:mod:`acrvpc.domain.spec_webhook`) can build on
it without importing the whole spec.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SpecModel(BaseModel):
    """Base of every spec section: unknown keys are errors, values are frozen and stripped."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def project_path(value: str) -> str:
    """A GitLab project's full path (group/project), without surrounding slashes."""
    value = value.strip("/")
    if "/" not in value:
        raise ValueError(f"{value!r} must be the project's full path with its group, e.g. platform/billing-api")
    return value
