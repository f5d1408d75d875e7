"""Generate the contract cassettes (``tests/cassettes/``) from the documented examples.

Run ``python tests/contract/make_cassettes.py`` after changing ``tests/contract/examples/*.json``
or a scenario below; ``--check`` only verifies that the committed cassettes are what this script
writes (a test runs it). The output is deterministic: no clock, no randomness.

Three kinds of cassettes:

* ``actions/<product>/<Action>.success.yaml`` (and ``actions/gitlab/<endpoint>.success.yaml``): the
  documented example answer of one action, verbatim. The fidelity test reads them.
* ``actions/<product>/<Action>.error.<Code>.yaml``: one error answer in the documented error shape
  ``{RequestId, HostId, Code, Message, Recommend}`` (HTTP 4xx/5xx), or CR's HTTP 200 with
  ``IsSuccess=false``; GitLab's documented error bodies.
* ``stages/<stage>/<scenario>.yaml``: the interactions one stage function makes, in order, built
  from the documented examples (``scenarios.py``). A few scenarios need a state the examples do not
  show (an empty list, a build that has ended, a rule that drifted); those answers are the
  documented example with the named fields changed (see :func:`ok`), so their shape stays the
  documented one.

Requests are matched on method, host, path and the Alibaba ``Action`` (``x-acs-action`` header),
never on signature, nonce or timestamp, so the request side holds only those.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE / "examples"
CASSETTES = HERE.parent / "cassettes"

REGION = "cn-hangzhou"
# The SDKs' default endpoints for cn-hangzhou (endpoint rule "regional" and the products' endpoint maps).
HOSTS = {"cr": "cr.cn-hangzhou.aliyuncs.com", "ecs": "ecs-cn-hangzhou.aliyuncs.com", "vpc": "vpc.aliyuncs.com"}
VERSIONS = {"cr": "2018-12-01", "ecs": "2014-05-26", "vpc": "2016-04-28"}
GITLAB_URL = "http://192.168.1.20"  # the contract spec's gitlab.endpoint

# Error answers: HTTP status and the service's message. ``None`` status = CR's HTTP 200 + IsSuccess=false.
ERRORS: dict[str, tuple[int | None, str]] = {
    "Throttling.User": (400, "Request was denied due to user flow control."),
    "InvalidParameter": (400, "The specified parameter is invalid."),
    "Forbidden.RAM": (
        403,
        "User not authorized to operate on the specified resource, or this API doesn't support RAM.",
    ),
    "ServiceUnavailable": (503, "The request has failed due to a temporary failure of the server."),
    "DependencyViolation": (403, "There is other resource depending on the specified security group."),
    "INSTANCE_NOT_EXIST": (None, ""),
    "NAMESPACE_NOT_EXIST": (None, ""),
    "REPO_NOT_EXIST": (None, ""),
    "INSTANCE_STATUS_NOT_SUPPORT": (None, ""),
    "TAG_NOT_EXIST": (None, ""),  # an assumed code (the sandbox's): GetRepoTag of a tag never pushed
}

# GitLab's documented error bodies (shared/api/gitlab-notes.md section 2; lib/api/api_guard.rb).
_BEARER = 'Bearer realm="Protected by OAuth 2.0", error="{error}", error_description="{description}"'
GITLAB_ERRORS: dict[str, tuple[int, Any, dict[str, str]]] = {
    "401": (401, {"message": "401 Unauthorized"}, {}),
    "401-revoked": (
        401,
        {"error": "invalid_token", "error_description": "Token was revoked. You have to re-authorize from the user."},
        {
            "WWW-Authenticate": _BEARER.format(
                error="invalid_token", description="Token was revoked. You have to re-authorize from the user."
            )
        },
    ),
    "403-insufficient_scope": (
        403,
        {
            "error": "insufficient_scope",
            "error_description": "The request requires higher privileges than provided by the access token.",
            "scope": "api read_api",
        },
        {
            "WWW-Authenticate": _BEARER.format(
                error="insufficient_scope",
                description="The request requires higher privileges than provided by the access token.",
            )
            + ', scope="api read_api"'
        },
    ),
    "403": (403, {"message": "403 Forbidden"}, {}),
    "404-project": (404, {"message": "404 Project Not Found"}, {}),
    "404-route": (404, {"error": "404 Not Found"}, {}),
    "422-url-blocked": (422, {"message": {"url": ["is blocked: Requests to the local network are not allowed"]}}, {}),
}


def load_examples() -> tuple[dict[str, Any], dict[str, Any]]:
    """The documented examples: (alibaba ``product/Action`` -> record, gitlab ``METHOD /route`` -> record)."""
    alibaba = json.loads((EXAMPLES / "alibaba.json").read_text(encoding="utf-8"))["examples"]
    gitlab = json.loads((EXAMPLES / "gitlab.json").read_text(encoding="utf-8"))["examples"]
    return alibaba, gitlab


ALIBABA, GITLAB = load_examples()


# -- interactions -----------------------------------------------------------------------------
def _request_id(*parts: str) -> str:
    digest = hashlib.sha1("|".join(parts).encode()).hexdigest().upper()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def _body(value: Any) -> dict[str, str]:
    return {"string": json.dumps(value, separators=(",", ":"), ensure_ascii=False)}


# The few actions the SDKs send as GET (their client's ``method``); every other one is POST.
GET_ACTIONS = {("cr", "GetRepoTag")}


def rpc(product: str, action: str, status: int, body: Any) -> dict[str, Any]:
    """One Alibaba Cloud RPC interaction (V3 signature: the action travels in ``x-acs-action``)."""
    headers = {"Content-Type": ["application/json;charset=utf-8"]}
    if isinstance(body, dict) and body.get("RequestId"):
        headers["x-acs-request-id"] = [body["RequestId"]]
    return {
        "request": {
            "body": None,
            "headers": {"x-acs-action": [action], "x-acs-version": [VERSIONS[product]]},
            "method": "GET" if (product, action) in GET_ACTIONS else "POST",
            "uri": f"https://{HOSTS[product]}/",
        },
        "response": {"status": {"code": status, "message": _REASONS[status]}, "headers": headers, "body": _body(body)},
    }


def rest(method: str, path: str, status: int, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """One GitLab REST v4 interaction."""
    out = {"Content-Type": ["application/json"]}
    out.update({k: [v] for k, v in (headers or {}).items()})
    return {
        "request": {"body": None, "headers": {}, "method": method, "uri": f"{GITLAB_URL}{path}"},
        "response": {"status": {"code": status, "message": _REASONS[status]}, "headers": out, "body": _body(body)},
    }


_REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    422: "Unprocessable Entity",
    503: "Service Unavailable",
}


def _set(body: Any, path: str, value: Any) -> None:
    """Set ``A.B[0].C`` in a nested body."""
    node = body
    parts = path.replace("[", ".[").lstrip(".").split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        key: Any = int(part[1:-1]) if part.startswith("[") else part
        if last:
            node[key] = value
        else:
            node = node[key]


def ok(key: str, changes: dict[str, Any] | None = None, *, path: str | None = None, body: Any = None) -> dict[str, Any]:
    """The documented success answer of ``key`` (``cr/GetInstance`` or ``GET /user``), optionally changed.

    Args:
        key: the example's key.
        changes: ``{"A.B[0].C": value}`` fields to change (for states the example does not show).
        path: GitLab only: the request path, when not the example's (e.g. another project).
        body: a whole body instead of the example's (an empty list, for a list endpoint).
    """
    if key in GITLAB:
        record = GITLAB[key]
        answer = copy.deepcopy(record["body"] if body is None else body)
        for field_path, value in (changes or {}).items():
            _set(answer, field_path, value)
        return rest(record["method"], path or record["path"], record["status"], answer)
    record = ALIBABA[key]
    answer = copy.deepcopy(record["body"])
    for field_path, value in (changes or {}).items():
        _set(answer, field_path, value)
    return rpc(record["product"], record["action"], 200, answer)


def fail(key: str, code: str, *, path: str | None = None) -> dict[str, Any]:
    """An error answer of ``key`` with ``code`` (Alibaba code, or a :data:`GITLAB_ERRORS` name)."""
    if key in GITLAB:
        status, body, headers = GITLAB_ERRORS[code]
        record = GITLAB[key]
        return rest(record["method"], path or record["path"], status, body, headers)
    product, action = key.split("/")
    status, message = ERRORS[code]
    request_id = _request_id(action, code)
    if status is None:  # CR business error: HTTP 200, IsSuccess=false, the code in Code
        return rpc(product, action, 200, {"RequestId": request_id, "IsSuccess": False, "Code": code})
    return rpc(
        product,
        action,
        status,
        {
            "RequestId": request_id,
            "HostId": HOSTS[product],
            "Code": code,
            "Message": message,
            "Recommend": f"https://api.aliyun.com/troubleshoot?q={code}&product={product}",
        },
    )


# -- output ------------------------------------------------------------------------------------
def _slug(key: str) -> str:
    """``GET /projects/:id`` -> ``GET_projects_id``; ``cr/GetInstance`` -> ``GetInstance``."""
    if key in GITLAB:
        method, route = key.split(" ", 1)
        return method + "_" + "_".join(p.lstrip(":") for p in route.strip("/").split("/"))
    return key.split("/")[1]


def action_cassette_name(key: str, outcome: str = "success") -> str:
    """Relative path of an action's cassette: ``actions/cr/GetInstance.success.yaml``, ``... .error.<Code>.yaml``."""
    product = "gitlab" if key in GITLAB else key.split("/")[0]
    suffix = "success" if outcome == "success" else f"error.{outcome}"
    return f"actions/{product}/{_slug(key)}.{suffix}.yaml"


_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when PyYAML has it: much faster
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def render(interactions: list[dict[str, Any]]) -> str:
    """A vcrpy cassette (format version 1) as YAML text."""
    return yaml.dump(
        {"interactions": interactions, "version": 1},
        Dumper=_DUMPER,
        sort_keys=False,
        allow_unicode=True,
        width=120,
        default_flow_style=False,
    )


def parse(text: str) -> Any:
    """A cassette's YAML text as data."""
    return yaml.load(text, Loader=_LOADER)


def cassettes() -> dict[str, str]:
    """Every cassette this script writes: relative path -> YAML text."""
    from tests.contract.scenarios import ACTION_ERRORS, SCENARIOS

    out: dict[str, str] = {}
    for key in list(ALIBABA) + list(GITLAB):
        out[action_cassette_name(key)] = render([ok(key)])
    for key, codes in ACTION_ERRORS.items():
        for code in codes:
            out[action_cassette_name(key, code)] = render([fail(key, code)])
    for name, calls in SCENARIOS.items():
        out[f"stages/{name}.yaml"] = render(calls)
    return dict(sorted(out.items()))


def stale(root: Path = CASSETTES) -> list[str]:
    """Cassettes under ``root/actions`` and ``root/stages`` that differ from, lack or exceed what this script writes."""
    expected = cassettes()
    problems = [
        f"{name}: differs" if (root / name).exists() else f"{name}: missing"
        for name, text in expected.items()
        if not (root / name).exists() or parse((root / name).read_text(encoding="utf-8")) != parse(text)
    ]
    for sub in ("actions", "stages"):
        for path in sorted((root / sub).rglob("*.yaml")) if (root / sub).exists() else []:
            name = path.relative_to(root).as_posix()
            if name not in expected:
                problems.append(f"{name}: not generated by make_cassettes.py")
    return problems


def write(root: Path = CASSETTES) -> int:
    """Write every cassette under ``root``; returns how many."""
    items = cassettes()
    for name, text in items.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return len(items)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only verify the committed cassettes")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale()
        for line in problems:
            print(line)
        return 1 if problems else 0
    print(f"wrote {write()} cassettes under {CASSETTES}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parents[1]))  # run as a script: make ``tests.contract`` importable
    from tests.contract.make_cassettes import main as _main

    sys.exit(_main())
