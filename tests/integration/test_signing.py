"""The sandbox verifies Alibaba Cloud signatures like the real gateway.

The vectors in tests/fixtures/signed-requests.json were signed by the real SDKs and captured on
loopback: the sandbox must accept each as captured and refuse it when anything signed changes.
"""

from __future__ import annotations

import http.client
import json
from datetime import UTC
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from alibabacloud_cr20181201 import models as cr_models
from alibabacloud_tea_openapi.exceptions import ClientException

from acrvpc.cloud import clients as cloud
from acrvpc.sandbox import defaults as sandbox_defaults

VECTORS = json.loads((Path(__file__).parent.parent / "fixtures" / "signed-requests.json").read_text())


def replay(
    url: str, request: dict, *, path: str | None = None, headers: dict | None = None, body: str | None = None
) -> tuple[int, dict]:
    """Send a captured request byte for byte (Host header as captured) to the sandbox."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    sent = dict(request["headers"]) if headers is None else headers
    conn.putrequest(request["method"], path or request["path"], skip_host=True, skip_accept_encoding=True)
    data = (request["body"] if body is None else body).encode()
    sent["Content-Length"] = str(len(data))
    for k, v in sent.items():
        conn.putheader(k, v)
    conn.endheaders(data)
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read() or b"{}")


@pytest.fixture
def vectors_sandbox(sandbox):
    """The sandbox with the vectors' credentials and replay protection off (dates/nonces are as captured)."""
    assert sandbox.world.credentials.get(VECTORS["access_key_id"]) == VECTORS["access_key_secret"]
    sandbox.world.verifier.replay_protection = False
    return sandbox


class TestCapturedVectors:
    @pytest.mark.parametrize("index", range(len(VECTORS["requests"])))
    def test_accepted_as_captured(self, vectors_sandbox, index):
        # Given a request the real SDK signed, when it is replayed unchanged
        status, body = replay(vectors_sandbox.url, VECTORS["requests"][index])
        # then the signature passes: whatever the answer, it is not a signing error
        assert body.get("Code") not in {"SignatureDoesNotMatch", "IncompleteSignature", "InvalidAccessKeyId.NotFound"}

    @pytest.mark.parametrize("index", range(len(VECTORS["requests"])))
    def test_tampered_query_refused(self, vectors_sandbox, index):
        request = VECTORS["requests"][index]
        path = (
            request["path"].replace("cn-hangzhou", "cn-beijing")
            if "cn-hangzhou" in request["path"]
            else request["path"] + "&Extra=1"
        )
        status, body = replay(vectors_sandbox.url, request, path=path)
        assert (status, body["Code"]) == (400, "SignatureDoesNotMatch")

    @pytest.mark.parametrize("header", ["x-acs-action", "x-acs-date", "x-acs-signature-nonce", "host"])
    def test_tampered_signed_header_refused(self, vectors_sandbox, header):
        request = VECTORS["requests"][0]
        headers = dict(request["headers"])
        headers[header] = headers[header] + "0"
        status, body = replay(vectors_sandbox.url, request, headers=headers)
        assert body["Code"] == "SignatureDoesNotMatch"

    def test_tampered_body_refused(self, vectors_sandbox):
        status, body = replay(vectors_sandbox.url, VECTORS["requests"][0], body="InstanceId=cri-other")
        assert body["Code"] == "SignatureDoesNotMatch"

    def test_unsigned_request_refused(self, vectors_sandbox):
        request = VECTORS["requests"][0]
        headers = {k: v for k, v in request["headers"].items() if k != "Authorization"}
        status, body = replay(vectors_sandbox.url, request, headers=headers)
        assert (status, body["Code"]) == (400, "IncompleteSignature")

    def test_error_body_has_documented_shape(self, vectors_sandbox):
        _, body = replay(vectors_sandbox.url, VECTORS["requests"][0], path="/?InstanceId=cri-x")
        assert set(body) == {"RequestId", "HostId", "Code", "Message", "Recommend"}


class TestReplayProtection:
    def test_captured_request_is_too_old_when_protection_on(self, sandbox):
        status, body = replay(sandbox.url, VECTORS["requests"][0])
        assert body["Code"] in {"InvalidTimeStamp.Expired", "SignatureNonceUsed"}

    def test_reused_nonce_refused(self, sandbox):
        # Given a freshly signed request (current date, new nonce), re-signed like the SDK does
        request = resign(VECTORS["requests"][0], VECTORS["access_key_secret"])
        # when it is sent twice, the first passes and the second is a replay
        assert replay(sandbox.url, request)[1].get("Code") != "SignatureNonceUsed"
        status, body = replay(sandbox.url, request)
        assert (status, body["Code"]) == (400, "SignatureNonceUsed")


def resign(request: dict, secret: str) -> dict:
    """A copy of a captured request with a current date, a new nonce and a valid signature."""
    import hashlib
    import hmac
    import uuid
    from datetime import datetime
    from urllib.parse import parse_qsl

    from acrvpc.sandbox.core.signing import parse_authorization, string_to_sign_v3

    headers = dict(request["headers"])
    headers["x-acs-date"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers["x-acs-signature-nonce"] = uuid.uuid4().hex
    algorithm, ak, signed, _ = parse_authorization(headers["Authorization"])
    path, _, query = request["path"].partition("?")
    lower = {k.lower(): v for k, v in headers.items()}
    to_sign = string_to_sign_v3("POST", path, parse_qsl(query, keep_blank_values=True), lower, signed, b"")
    signature = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = f"{algorithm} Credential={ak},SignedHeaders={';'.join(signed)},Signature={signature}"
    return {**request, "headers": headers}


class TestRealClients:
    def test_right_secret_is_accepted(self, sandbox, spec):
        client = cloud.cr_client(spec.region, cloud.resolve_access_key(None))
        body = client.get_instance(cr_models.GetInstanceRequest(instance_id=spec.instance_id)).body
        assert body.instance_id == spec.instance_id

    def test_wrong_secret_gets_signature_error(self, sandbox, spec):
        client = cloud.cr_client(spec.region, cloud.AccessKey(sandbox_defaults.ACCESS_KEY_ID, "wrong-secret"))
        with pytest.raises(ClientException) as info:
            client.get_instance(cr_models.GetInstanceRequest(instance_id=spec.instance_id))
        assert info.value.code == "SignatureDoesNotMatch"
        assert info.value.status_code == 400

    def test_unknown_access_key_gets_not_found(self, sandbox, spec):
        client = cloud.cr_client(spec.region, cloud.AccessKey("LTAIunknown", "x"))
        with pytest.raises(ClientException) as info:
            client.get_instance(cr_models.GetInstanceRequest(instance_id=spec.instance_id))
        assert info.value.code == "InvalidAccessKeyId.NotFound"

    def test_v1_hmac_sha1_signing_is_verified_too(self, sandbox, spec, monkeypatch):
        # Given a client that signs with the older RPC scheme (Signature in the query)
        client = cloud.cr_client(spec.region, cloud.resolve_access_key(None))
        client._signature_algorithm = "v2"
        body = client.get_instance(cr_models.GetInstanceRequest(instance_id=spec.instance_id)).body
        assert body.instance_status == "RUNNING"
        bad = cloud.cr_client(spec.region, cloud.AccessKey(sandbox_defaults.ACCESS_KEY_ID, "nope"))
        bad._signature_algorithm = "v2"
        with pytest.raises(ClientException) as info:
            bad.get_instance(cr_models.GetInstanceRequest(instance_id=spec.instance_id))
        assert info.value.code == "SignatureDoesNotMatch"

    def test_failed_signature_is_logged_without_the_secret(self, sandbox, spec):
        client = cloud.cr_client(spec.region, cloud.AccessKey(sandbox_defaults.ACCESS_KEY_ID, "wrong-secret"))
        with pytest.raises(ClientException):
            client.get_instance(cr_models.GetInstanceRequest(instance_id=spec.instance_id))
        calls = sandbox.world.calls.list()
        assert calls[-1]["code"] == "SignatureDoesNotMatch"
        assert "wrong-secret" not in json.dumps(calls)
