"""Replays the fuzzing regression corpus (tests/fuzz/corpus/, see its README) on every run."""

from __future__ import annotations

import json
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError
from standardwebhooks import Webhook

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from acrvpc.domain.spec import Spec, SpecError, load_spec
from deployments.gitlab_events import EVENT_MODELS
from deployments.webhook import create_app
from tests.fuzz.test_webhook_fuzz import SECRET, SIGNING, SPEC, Starts, check_answer

pytestmark = pytest.mark.fuzz

CORPUS = Path(__file__).parent / "corpus"


def files(kind: str, pattern: str) -> list[Path]:
    found = sorted((CORPUS / kind).glob(pattern))
    assert found, f"no corpus files in {CORPUS / kind}"
    return found


class TestSpecCorpus:
    @pytest.mark.parametrize("path", files("specs", "*.yaml"), ids=lambda p: p.stem)
    def test_the_loader_raises_only_spec_errors(self, path):
        try:
            result = load_spec(path)
        except SpecError as exc:
            assert exc.problems
        else:
            assert isinstance(result, Spec)

    def test_a_directory_as_the_spec_path_is_a_spec_error(self, tmp_path):
        with pytest.raises(SpecError) as caught:
            load_spec(tmp_path)
        assert "cannot be read" in str(caught.value)


class TestPayloadCorpus:
    @pytest.mark.parametrize("path", files("payloads", "*.json"), ids=lambda p: p.stem)
    def test_the_models_raise_only_validation_errors(self, path):
        data = json.loads(path.read_bytes())
        for model in EVENT_MODELS.values():
            try:
                event = model.model_validate(data)
            except ValidationError:
                continue
            SPEC.webhook.route_for(event.project.path_with_namespace, event.ref)


def delivery(entry: dict) -> tuple[bytes, dict[str, str]]:
    body = bytes.fromhex(entry["body_hex"]) if "body_hex" in entry else entry["body"].encode()
    headers = {"Content-Type": "application/json", "X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": "corpus-1"}
    if entry["signed"]:
        when = datetime.fromtimestamp(time.time(), tz=UTC)
        headers.update(
            {
                "webhook-id": "corpus-1",
                "webhook-timestamp": str(int(when.timestamp())),
                "webhook-signature": Webhook(SIGNING).sign("corpus-1", when, body.decode("utf-8", "replace")),
            }
        )
    else:
        headers["X-Gitlab-Token"] = SECRET
    headers.update(entry["headers"])
    return body, headers


class TestReceiverCorpus:
    @pytest.mark.parametrize("path", files("receiver", "*.json"), ids=lambda p: p.stem)
    def test_each_delivery_gets_its_expected_answer_and_never_a_5xx(self, path):
        entry = json.loads(path.read_text())
        starts = Starts()
        secret, signing = (None, SIGNING) if entry["signed"] else (SECRET, None)
        client = TestClient(create_app(SPEC, secret, starts, signing_secret=signing), raise_server_exceptions=False)
        body, headers = delivery(entry)
        answer = client.post("/hooks/gitlab", content=body, headers=headers)
        check_answer(answer.status_code, answer.text, answer.headers.get("content-type", ""))
        assert answer.status_code == entry.get("expect", answer.status_code), answer.text
        if answer.status_code != 202:
            assert starts.calls == []


def test_the_corpus_files_are_small_enough_to_keep():
    assert sum(p.stat().st_size for p in CORPUS.rglob("*") if p.is_file()) < 400_000
