"""The sandbox's loopback HTTP server.

One port speaks three things:

* Alibaba Cloud RPC (``POST /?<params>``), routed by ``x-acs-version`` / ``Version`` to the CR,
  ECS or VPC emulation, after the request's signature is verified;
* GitLab REST v4 under ``/api/v4/``;
* admin routes under ``/_sandbox/`` (call log, reset, settings, faults, clock, RAM policy).

With a RAM policy loaded (``SandboxServer(ram_policy=...)``, ``POST /_sandbox/ram``), each RPC call is
authorized against it first, as for a RAM user's AccessKey (:mod:`acrvpc.sandbox.core.ram`).

Use it in-process (``with SandboxServer() as sb: sb.url``) or standalone (``acrvpc sandbox``).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from . import admin
from . import builds_admin as _builds_admin  # noqa: F401 - registers its routes
from . import console_admin as _console_admin  # noqa: F401 - registers its routes
from . import faults_admin as _faults_admin  # noqa: F401 - registers its routes
from . import ram_admin as _ram_admin  # noqa: F401 - registers its routes
from .core import ram
from .core.errors import ActionNotFound, RpcError, VersionNotFound
from .core.registry import SERVICES
from .core.request import RpcRequest

# Importing the response modules registers their actions.
from .cr import responses as _cr  # noqa: F401
from .ecs import responses as _ecs  # noqa: F401
from .gitlab import responses as gitlab_responses
from .vpc import responses as _vpc  # noqa: F401
from .world import World, load_scenario

MAX_BODY = 1 << 20
# V1-signed requests carry these in the query; they are not API parameters.
_V1_COMMON_PARAMS = (
    "Action",
    "Version",
    "Format",
    "Timestamp",
    "SignatureNonce",
    "SignatureMethod",
    "SignatureVersion",
    "AccessKeyId",
    "Signature",
    "SecurityToken",
)


def _json_bytes(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms delayed-ACK stall

    # Quiet: the call log is the record.
    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    # -- plumbing -------------------------------------------------------------------------
    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None, late: bool = False) -> None:
        data = b"" if status == 204 else _json_bytes(body)  # 204 carries no body (keep-alive stays in sync)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json;charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            if not late:
                raise
            self.close_connection = True  # a late answer: the client gave up and closed

    def _drop(self) -> None:
        """Close the connection without answering (an injected fault)."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(min(length, MAX_BODY)) if length else b""

    def _dispatch(self) -> None:
        world = self.server.world
        split = urlsplit(self.path)
        body = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        if split.path.startswith("/_sandbox/"):
            self._admin(world, split.path, dict(parse_qsl(split.query)), body)
        elif split.path.startswith("/api/v4/") or split.path == "/api/v4":
            self._gitlab(world, split.path[len("/api/v4") :], split.query, headers, body)
        else:
            self._rpc(world, split.path, split.query, headers, body)

    def _latency(self, world: World) -> None:
        if world.faults.latency_ms > 0:
            time.sleep(world.faults.latency_ms / 1000.0)

    # -- Alibaba Cloud RPC ----------------------------------------------------------------
    def _rpc(self, world: World, path: str, raw_query: str, headers: dict[str, str], body: bytes) -> None:
        params = dict(parse_qsl(raw_query, keep_blank_values=True))
        version = headers.get("x-acs-version") or params.get("Version", "")
        action = headers.get("x-acs-action") or params.get("Action", "")
        service = SERVICES.get(version)
        product = service.product if service else "unknown"
        host_id = (service.host if service else "sandbox").format(region=world.region)
        request_id = str(uuid.uuid4()).upper()
        for k in _V1_COMMON_PARAMS:
            params.pop(k, None)
        writes = False
        slow = False
        self._latency(world)
        try:
            if service is None:
                raise VersionNotFound(version)
            with world.lock:
                access_key_id = world.verifier.verify(self.command, path or "/", raw_query, headers, body)
            spec = service.actions.get(action)
            if spec is None:
                raise ActionNotFound(service.product, service.version, action)
            writes = spec.writes
            with world.lock:
                ram.authorize(world, product, action, params, access_key_id)
            fault = world.faults.decide(product, action)
            if fault is not None and fault.kind == "drop":
                world.calls.record(product, action, writes, 0, fault.code, world.clock.now(), params)
                self._drop()
                return
            if fault is not None and fault.kind == "error":
                raise world.faults.error_for(fault)
            if fault is not None and fault.kind == "slow":
                slow = True
                time.sleep(fault.delay_ms / 1000.0)  # outside world.lock
            req = RpcRequest(product, version, action, params, access_key_id, request_id, headers)
            with world.lock:
                result = spec.handler(world, req)
            reply: dict[str, Any] = {"RequestId": request_id}
            if product == "cr":
                reply.update({"IsSuccess": True, "Code": "success"})
            reply.update(result)
            world.calls.record(product, action, writes, 200, "Slow" if slow else "", world.clock.now(), params)
            self._send(200, reply, {"x-acs-request-id": request_id}, late=slow)
        except RpcError as err:
            world.calls.record(product, action, writes, err.http_status, err.code, world.clock.now(), params)
            extra = {"x-acs-request-id": request_id, **(getattr(err, "headers", None) or {})}
            self._send(err.http_status, err.body(request_id, host_id, product), extra, late=slow)

    # -- GitLab ---------------------------------------------------------------------------
    def _gitlab(self, world: World, path: str, raw_query: str, headers: dict[str, str], body: bytes) -> None:
        self._latency(world)
        base_url = f"http://{headers.get('host', '127.0.0.1')}"
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        writes = self.command not in ("GET", "HEAD")
        route = _gitlab_route(self.command, path)
        fault = world.faults.decide("gitlab", route)
        if fault is not None and fault.kind == "drop":
            world.calls.record("gitlab", route, writes, 0, fault.code, world.clock.now(), query)
            self._drop()
            return
        if fault is not None and fault.kind == "error":
            status, reply, extra = fault.gitlab_answer()
            world.calls.record("gitlab", route, writes, status, fault.code, world.clock.now(), query)
            self._send(status, reply, extra)
            return
        slow = fault is not None and fault.kind == "slow"
        if fault is not None and slow:
            time.sleep(fault.delay_ms / 1000.0)  # outside world.lock
        with world.lock:
            status, reply, extra, route = gitlab_responses.handle(
                world, self.command, path, query, headers, body, base_url
            )
        code = "" if status < 400 else str(status)
        world.calls.record(
            "gitlab", route, writes, status, "Slow" if slow and not code else code, world.clock.now(), query
        )
        self._send(status, reply, extra, late=slow)

    # -- admin ----------------------------------------------------------------------------
    def _admin(self, world: World, path: str, query: dict[str, str], body: bytes) -> None:
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            self._send(400, {"error": "the body must be JSON"})
            return
        with world.lock:
            status, reply = admin.dispatch(world, self.command, path, query, payload)
        self._send(status, reply)


def _gitlab_route(method: str, path: str) -> str:
    """The GitLab route a request will hit (``GET /projects/:id``), named as in the call log."""
    path = path.rstrip("/") or "/"
    for verb, pattern, route, _handler in gitlab_responses._ROUTES:  # same package
        if verb == method and pattern.fullmatch(path):
            return route
    return f"{method} (unknown)"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], world: World) -> None:
        super().__init__(address, _Handler)
        self.world = world


class SandboxServer:
    """A sandbox on loopback.

    Args:
        scenario: a scenario mapping, or a path to a scenario YAML file; ``None`` for the default.
        port: TCP port (0 picks a free one).
        host: bind address; loopback by default, and it should stay so.
        ram_policy: a RAM policy document (mapping or JSON string) every RPC call must satisfy, as for a
            RAM user's AccessKey; ``None`` (default) allows everything.

    Example:
        >>> with SandboxServer() as sandbox:
        ...     os.environ["ACRVPC_SANDBOX_URL"] = sandbox.url
    """

    def __init__(
        self,
        scenario: dict[str, Any] | str | Path | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        ram_policy: dict[str, Any] | str | None = None,
    ) -> None:
        if scenario is None or isinstance(scenario, (str, Path)):
            scenario = load_scenario(scenario)
        self.world = World(scenario)
        self.world.ram_policy = ram.load_policy(ram_policy)
        self._httpd = _HTTPServer((host, port), self.world)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        host = self._httpd.server_address[0]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{self.port}"

    def start(self) -> SandboxServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="acrvpc-sandbox", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
