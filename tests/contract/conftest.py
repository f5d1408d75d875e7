"""Contract tests: our stage functions against the providers' documented answers, replayed by vcrpy.

Replay (the default, and CI): pytest-recording's record mode is ``none``, so a request that no
cassette interaction matches fails instead of reaching the network. Clients are built by
``acrvpc.cloud.clients`` exactly as for a real account (regional HTTPS endpoints, no sandbox) with a dummy
AccessKey; GitLab is the contract spec's ``gitlab.endpoint``.

Recording against a real account (docs/contract-tests.md)::

    ACRVPC_RECORD_ACCESS_KEY_ID=... ACRVPC_RECORD_ACCESS_KEY_SECRET=... ACRVPC_RECORD_GITLAB_TOKEN=... \\
    ACRVPC_CONTRACT_SPEC=my-spec.yaml ACRVPC_CASSETTE_DIR=/tmp/recorded \\
        pytest tests/contract -m recordable --record-mode=once

Recorded cassettes are scrubbed (``support.vcr_config``): no Authorization, nonce, date, security
token, PRIVATE-TOKEN, AccessKeyId or signature, and account ids, tokens and e-mail addresses in
answers replaced by placeholders.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.contract import support

DUMMY_KEY = ("LTAIcontract", "x")
DUMMY_GITLAB_TOKEN = "contract-token"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "recordable: a read-only contract test that may record against a real "
        "account with --record-mode (see docs/contract-tests.md)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """When recording, run only the read-only ``recordable`` tests: the others replay writes and errors
    that must never be sent to a real account."""
    if (config.getoption("--record-mode", default=None) or "none") == "none":
        return
    here = os.path.dirname(__file__)
    keep, drop = [], []
    for item in items:
        recorded = str(item.fspath).startswith(here) and item.get_closest_marker("vcr") is not None
        (drop if recorded and item.get_closest_marker("recordable") is None else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_recording_configure(config: pytest.Config, vcr: Any) -> None:
    """Register the matcher on the Alibaba ``Action`` (header or query), never on signatures."""
    vcr.register_matcher("action", support.match_action)


@pytest.fixture(scope="module")
def vcr_cassette_dir() -> str:
    return str(support.CASSETTE_DIR)


@pytest.fixture
def vcr_config() -> dict[str, Any]:
    return support.vcr_config()


@pytest.fixture
def recording(record_mode: str) -> bool:
    """Whether this run records against a real account (``--record-mode`` other than none)."""
    return record_mode != "none"


@pytest.fixture(autouse=True)
def _every_interaction_played(vcr: Any, record_mode: str) -> Iterator[None]:
    """A replayed test must use every interaction of its cassette: the calls are exactly the documented ones."""
    yield
    cassette = vcr
    if cassette is not None and record_mode == "none" and not cassette.all_played:
        unplayed = [i for i in range(len(cassette.data)) if cassette.play_counts[i] == 0]
        pytest.fail(f"cassette {cassette._path}: interactions {unplayed} were never requested", pytrace=False)


@pytest.fixture
def contract_spec() -> Any:
    """The spec whose ids the documented examples carry (or ``ACRVPC_CONTRACT_SPEC`` when recording)."""
    from acrvpc.domain.spec import load_spec

    return load_spec(support.CONTRACT_SPEC)


def _env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        pytest.fail(f"recording needs {name} in the environment (docs/contract-tests.md)", pytrace=False)
    return value


@pytest.fixture
def access_key(recording: bool) -> Any:
    """A dummy AccessKey for replay; the ``ACRVPC_RECORD_*`` one when recording."""
    from acrvpc.cloud import clients as cloud

    if not recording:
        return cloud.AccessKey(*DUMMY_KEY)
    return cloud.AccessKey(
        _env("ACRVPC_RECORD_ACCESS_KEY_ID"),
        _env("ACRVPC_RECORD_ACCESS_KEY_SECRET"),
        os.environ.get("ACRVPC_RECORD_SECURITY_TOKEN") or None,
    )


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch, contract_spec: Any, access_key: Any) -> Any:
    """CR, ECS and VPC clients from acrvpc.cloud.clients, for the real regional endpoints (no sandbox)."""
    from acrvpc.cloud import clients as cloud

    monkeypatch.delenv(cloud.SANDBOX_ENV, raising=False)
    region = contract_spec.region
    return cloud.CloudClients(
        cloud.cr_client(region, access_key), cloud.ecs_client(region, access_key), cloud.vpc_client(region, access_key)
    )


@pytest.fixture
def gitlab_client(monkeypatch: pytest.MonkeyPatch, contract_spec: Any, recording: bool) -> Any:
    """python-gitlab from acrvpc.cloud.clients, for the spec's GitLab URL (no sandbox)."""
    from acrvpc.cloud import clients as cloud

    monkeypatch.delenv(cloud.SANDBOX_ENV, raising=False)
    token = _env("ACRVPC_RECORD_GITLAB_TOKEN") if recording else DUMMY_GITLAB_TOKEN
    return cloud.gitlab_client(contract_spec.gitlab.api_base, token)
