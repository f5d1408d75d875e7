"""What the contract and fidelity tests share: cassette naming, the ``Action`` matcher, the JSON
shape comparison, the secret scan and the scrubbing applied when recording against a real account.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.contract import make_cassettes

CASSETTE_ENV = "ACRVPC_CASSETTE_DIR"
SPEC_ENV = "ACRVPC_CONTRACT_SPEC"
CASSETTE_DIR = Path(os.environ.get(CASSETTE_ENV) or make_cassettes.CASSETTES).resolve()
CONTRACT_SPEC = Path(os.environ.get(SPEC_ENV) or make_cassettes.EXAMPLES / "spec.yaml")

# cassettes the contract tests replay (filled at import; the coverage test reads it)
USED: set[str] = set()


def _marks(name: str) -> list[Any]:
    USED.add(name)
    return [pytest.mark.vcr, pytest.mark.default_cassette(name)]


def cassette(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Replay (or, with ``--record-mode``, record) the test through ``tests/cassettes/<name>``."""

    def decorate(test: Callable[..., Any]) -> Callable[..., Any]:
        for mark in _marks(name):
            test = mark(test)
        return test

    return decorate


def case(name: str, *values: Any) -> Any:
    """A ``pytest.param`` replaying ``tests/cassettes/<name>`` (one cassette per parametrized case)."""
    return pytest.param(*values, marks=_marks(name), id=Path(name).stem)


# -- request matching -------------------------------------------------------------------------
def action_of(request: Any) -> str | None:
    """The Alibaba Cloud action of a vcrpy request: ``x-acs-action`` (V3 signature) or ``Action`` (V1)."""
    for name, value in request.headers.items():
        if name.lower() == "x-acs-action":
            return value[0] if isinstance(value, list) else value
    return dict(parse_qsl(urlsplit(request.uri).query)).get("Action")


def match_action(r1: Any, r2: Any) -> None:
    """vcrpy matcher: same Alibaba action (GitLab requests have none, and match on method/host/path)."""
    assert action_of(r1) == action_of(r2), f"action {action_of(r1)} != {action_of(r2)}"


MATCH_ON = ["method", "host", "path", "action"]


# -- cassettes -----------------------------------------------------------------------------------
def interactions(name: str | Path, root: Path = CASSETTE_DIR) -> list[dict[str, Any]]:
    """The interactions of a cassette, as stored."""
    path = name if isinstance(name, Path) else root / name
    return make_cassettes.parse(path.read_text(encoding="utf-8"))["interactions"]


def response_json(interaction: dict[str, Any]) -> Any:
    """The JSON body of an interaction's response."""
    body = interaction["response"]["body"]["string"]
    return json.loads(body.decode() if isinstance(body, bytes) else body)


def is_error(interaction: dict[str, Any]) -> bool:
    """HTTP 4xx/5xx, or CR's HTTP 200 with ``IsSuccess`` false."""
    if interaction["response"]["status"]["code"] >= 400:
        return True
    body = response_json(interaction)
    return isinstance(body, dict) and body.get("IsSuccess") is False


def endpoint_of(interaction: dict[str, Any]) -> str:
    """``cr/GetInstance`` for an Alibaba request, ``GET /projects/:id`` for a GitLab one."""
    request = interaction["request"]
    headers = request.get("headers") or {}
    action = (headers.get("x-acs-action") or [None])[0]
    if action:
        host = urlsplit(request["uri"]).hostname or ""
        product = next(p for p, h in make_cassettes.HOSTS.items() if h == host)
        return f"{product}/{action}"
    path = urlsplit(request["uri"]).path
    for key, record in make_cassettes.GITLAB.items():
        if record["method"] == request["method"] and _route_matches(key.split(" ", 1)[1], path):
            return key
    return f"{request['method']} {path}"


def _route_matches(route: str, path: str) -> bool:
    pattern = "/api/v4" + re.sub(r":\w+", "[^/]+", route)
    return re.fullmatch(pattern, path) is not None


# -- JSON shape comparison ---------------------------------------------------------------------
def kind(value: Any) -> str:
    """The JSON type of a value: null, bool, int, float, str, list or dict."""
    if value is None:
        return "null"
    for name, types in (("bool", bool), ("int", int), ("float", float), ("str", str), ("list", list), ("dict", dict)):
        if isinstance(value, types):
            return name
    return type(value).__name__


@dataclass(frozen=True)
class Rules:
    """How an answer is held to a documented example.

    Attributes:
        complete: every documented key must be present (Alibaba: the SDK documents each answer's keys).
        optional: documented paths (``A.B[].C``) that the service omits in some answers.
        required: paths that must be present even when ``complete`` is false (GitLab).
        nullable: JSON null matches any type, on either side (GitLab fields are nullable).
    """

    complete: bool = True
    optional: frozenset[str] = field(default_factory=frozenset)
    required: frozenset[str] = field(default_factory=frozenset)
    nullable: bool = False


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _template(items: list[Any]) -> tuple[Any, set[str] | None]:
    """One element standing for a documented list, and the keys every documented element has."""
    if all(isinstance(item, dict) for item in items):
        merged: dict[str, Any] = {}
        for item in items:
            for key, value in item.items():
                if merged.get(key) is None:
                    merged[key] = value
        return merged, set.intersection(*(set(item) for item in items))
    return items[0], None


def compare(
    documented: Any, answer: Any, rules: Rules = Rules(), path: str = "", must: set[str] | None = None
) -> list[str]:
    """Where ``answer`` departs from the shape of ``documented``: one line per problem.

    Keys are compared recursively, values by JSON type (a string ``TotalCount`` stays a string,
    booleans stay booleans); a list is compared element by element against its documented
    elements. Keys the answer has beyond the documented ones are not judged here (see
    :func:`sdk_unknown_keys`).
    """
    kd, ka = kind(documented), kind(answer)
    if kd == "null" or (ka == "null" and rules.nullable):
        return []
    if kd != ka:
        return [
            f"{path or '(body)'}: documented {kd} {json.dumps(documented)[:40]}, answered {ka} "
            f"{json.dumps(answer)[:40]}"
        ]
    problems: list[str] = []
    if kd == "dict":
        for key, value in documented.items():
            sub = _join(path, key)
            if key not in answer:
                expected = rules.complete and sub not in rules.optional and (must is None or key in must)
                if expected or sub in rules.required:
                    problems.append(f"{sub}: documented key missing")
                continue
            problems += compare(value, answer[key], rules, sub)
    elif kd == "list" and documented:
        template, keys = _template(documented)
        for item in answer:
            problems += compare(template, item, rules, f"{path}[]", keys)
    return list(dict.fromkeys(problems))


def _lost(before: Any, after: Any, path: str = "") -> list[str]:
    out: list[str] = []
    if isinstance(before, dict):
        for key, value in before.items():
            sub = _join(path, key)
            if not isinstance(after, dict) or key not in after:
                out.append(sub)
            else:
                out += _lost(value, after[key], sub)
    elif isinstance(before, list) and isinstance(after, list):
        for x, y in zip(before, after, strict=False):  # a shorter `after` lost the rest
            out += _lost(x, y, f"{path}[]")
    return list(dict.fromkeys(out))


def sdk_unknown_keys(model_class: type, answer: dict[str, Any]) -> list[str]:
    """Paths of ``answer`` the SDK response model drops (``from_map`` then ``to_map``): unknown keys."""
    kept = model_class().from_map(copy.deepcopy(answer)).to_map()
    return _lost(answer, kept)


# -- secrets -----------------------------------------------------------------------------------
SECRET_HEADERS = {
    "authorization",
    "private-token",
    "job-token",
    "x-acs-security-token",
    "x-acs-signature-nonce",
    "x-acs-date",
    "x-acs-accesskey-id",
    "x-gitlab-token",
    "cookie",
    "set-cookie",
}
SECRET_QUERY = {
    "AccessKeyId",
    "Signature",
    "SignatureNonce",
    "Timestamp",
    "SecurityToken",
    "private_token",
    "access_token",
}
SECRET_BODY_KEYS = {"runners_token", "token", "AccessKeySecret", "SecurityToken", "private_token"}
# Values documented as examples (or left by the scrubber) that look like secrets but are not.
PLACEHOLDERS = {"b8bc4a7a29eb76ea83cf79e4908c2b", "[FILTERED]"}
_PATTERNS = [
    ("an AccessKey id", re.compile(r"LTAI[0-9A-Za-z]{4,}")),
    ("a GitLab personal access token", re.compile(r"glpat-[0-9A-Za-z_\-]{4,}")),
    ("an ACS3 Authorization value", re.compile(r"ACS3-HMAC-SHA256\s+Credential=")),
]
_SIXTEEN_DIGITS = re.compile(r"(?<![0-9])[0-9]{16}(?![0-9])")
ACCOUNT_KEYS = {"OwnerId", "AccountId", "PhysicalConnectionOwnerUid", "AliUid", "OwnerAccount", "ResourceOwnerId"}
FAKE_ACCOUNT_INT = 1234567890
FAKE_ACCOUNT_STR = "123456789012****"


def obviously_fake(digits: str) -> bool:
    """``1234567890123456``, ``1111222211112222``...: a made-up account id, not a real one."""
    return len(set(digits)) <= 2 or digits in "0123456789" * 4 or digits in "9876543210" * 4


def _walk(value: Any, path: str = "") -> Any:
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from _walk(sub, _join(path, key))
            yield _join(path, key), key, sub
    elif isinstance(value, list):
        for sub in value:
            yield from _walk(sub, f"{path}[]")


def find_secrets(text: str) -> list[str]:
    """What in a cassette's text looks like a credential or a real account id."""
    problems = [f"{what}: {m.group(0)[:12]}..." for what, rx in _PATTERNS for m in rx.finditer(text)]
    problems += [
        f"a 16-digit account id: {m.group(0)}" for m in _SIXTEEN_DIGITS.finditer(text) if not obviously_fake(m.group(0))
    ]
    data = make_cassettes.parse(text) or {}
    for item in data.get("interactions", []):
        request = item.get("request", {})
        for header in request.get("headers") or {}:
            if header.lower() in SECRET_HEADERS:
                problems.append(f"request header {header}")
        for name, _ in parse_qsl(urlsplit(request.get("uri", "")).query):
            if name in SECRET_QUERY:
                problems.append(f"query parameter {name}")
        for header in item.get("response", {}).get("headers") or {}:
            if header.lower() in SECRET_HEADERS:
                problems.append(f"response header {header}")
        try:
            body = response_json(item)
        except (ValueError, KeyError, TypeError):
            continue
        for path, key, value in _walk(body):
            if key in SECRET_BODY_KEYS and isinstance(value, str) and value and value not in PLACEHOLDERS:
                problems.append(f"response field {path}")
    return problems


# -- recording: scrub what a real account answers --------------------------------------------
def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, sub in value.items():
            if key in ACCOUNT_KEYS and isinstance(sub, (int, str)) and not isinstance(sub, bool):
                out[key] = FAKE_ACCOUNT_INT if isinstance(sub, int) else FAKE_ACCOUNT_STR
            elif key in SECRET_BODY_KEYS and isinstance(sub, str):
                out[key] = "[FILTERED]"
            elif key in ("email", "commit_email", "public_email") and isinstance(sub, str):
                out[key] = "user@example.com"
            else:
                out[key] = _scrub(sub)
        return out
    if isinstance(value, list):
        return [_scrub(sub) for sub in value]
    return value


def scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    """vcrpy ``before_record_response``: account ids, tokens and e-mail addresses out of a real answer."""
    response["headers"] = {k: v for k, v in response.get("headers", {}).items() if k.lower() not in SECRET_HEADERS}
    raw = response.get("body", {}).get("string")
    if not raw:
        return response
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        text = json.dumps(_scrub(json.loads(text)), separators=(",", ":"), ensure_ascii=False)
    except ValueError:
        pass
    text = _SIXTEEN_DIGITS.sub("1234567890123456", text)
    response["body"]["string"] = text.encode() if isinstance(raw, bytes) else text
    return response


def vcr_config() -> dict[str, Any]:
    """The vcrpy configuration of every contract test (replay and recording)."""
    return {
        "match_on": MATCH_ON,
        "filter_headers": [
            "Authorization",
            "x-acs-signature-nonce",
            "x-acs-date",
            "x-acs-security-token",
            "x-acs-accesskey-id",
            "PRIVATE-TOKEN",
            "JOB-TOKEN",
            "Cookie",
        ],
        "filter_query_parameters": [
            "AccessKeyId",
            "Signature",
            "SignatureNonce",
            "Timestamp",
            "SecurityToken",
            "private_token",
            "access_token",
        ],
        "before_record_response": scrub_response,
        "decode_compressed_response": True,
        "allow_playback_repeats": False,
    }
