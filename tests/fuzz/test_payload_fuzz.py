"""Fuzzing GitLab's payload models: arbitrary JSON raises only pydantic's ValidationError.

A body the models accept must also be routable without an exception (``deleted``, ``sha``,
``webhook.route_for``). Inputs: arbitrary JSON values, and the documented push payload with one
field replaced. Inputs that ever broke the models are kept in ``tests/fuzz/corpus/payloads/``.
"""

from __future__ import annotations

import copy
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from acrvpc.domain.spec import load_spec
from deployments.gitlab_events import EVENT_MODELS
from tests.conftest import EXAMPLE_SPEC
from tests.fuzz.test_spec_fuzz import paths
from tests.webhook_payloads import PUSH

pytestmark = pytest.mark.fuzz

SCALE = float(os.environ.get("ACRVPC_FUZZ_SCALE", "1"))
SPEC = load_spec(EXAMPLE_SPEC)
MODELS = list(EVENT_MODELS.values())
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=50)
    | st.sampled_from(
        ["push", "tag_push", "refs/heads/main", "refs/tags/release-v1", "0" * 40, "platform/billing-api", "9" * 40]
    )
)
VALUES = st.recursive(
    SCALARS,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=20), kids, max_size=5),
    max_leaves=25,
)
PUSH_PATHS = [p for p in paths(PUSH) if p]


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=5000,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def check_payload(model, data) -> None:
    try:
        event = model.model_validate(data)
    except ValidationError:
        return
    assert isinstance(event.deleted, bool) and isinstance(event.sha, str)
    SPEC.webhook.route_for(event.project.path_with_namespace, event.ref)


def replaced(path: tuple, value) -> dict:
    data = copy.deepcopy(PUSH)
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return data


class TestPayloadFuzz:
    @given(st.sampled_from(MODELS), VALUES)
    @fuzz_settings(500)
    def test_arbitrary_json(self, model, value):
        check_payload(model, value)

    @given(st.sampled_from(MODELS), st.sampled_from(PUSH_PATHS), VALUES)
    @fuzz_settings(800)
    def test_the_documented_push_with_one_field_replaced(self, model, path, value):
        check_payload(model, replaced(path, value))
