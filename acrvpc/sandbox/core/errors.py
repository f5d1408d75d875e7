"""Alibaba Cloud error answers, serialized in one place.

Every error the sandbox answers on the Alibaba Cloud RPC side is a subclass of
:class:`RpcError` with the real error ``code``, the HTTP ``status`` and a message.
CR business errors (``soft = True``) answer HTTP 200 with ``IsSuccess=false``, as
Container Registry does for some failures; everything else answers the documented
error body ``{RequestId, HostId, Code, Message, Recommend}`` with its status.
"""

from __future__ import annotations

from typing import Any


class RpcError(Exception):
    """An error answer of the Alibaba Cloud RPC side."""

    code = "InternalError"
    status = 500
    message = "The request processing has failed due to some unknown error."
    soft = False  # CR: HTTP 200 + IsSuccess=false instead of an HTTP error

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if message is not None:
            self.message = message
        self.extra = extra or {}
        super().__init__(f"{self.code}: {self.message}")

    def body(self, request_id: str, host_id: str, product: str) -> dict[str, Any]:
        """The JSON body of this error, as the real service shapes it."""
        if self.soft:
            return {"RequestId": request_id, "IsSuccess": False, "Code": self.code, "Message": self.message}
        body = {
            "RequestId": request_id,
            "HostId": host_id,
            "Code": self.code,
            "Message": self.message,
            "Recommend": f"https://api.aliyun.com/troubleshoot?q={self.code}&product={product}",
        }
        body.update(self.extra)
        return body

    @property
    def http_status(self) -> int:
        return 200 if self.soft else self.status


class MissingParameter(RpcError):
    code = "MissingParameter"
    status = 400

    def __init__(self, name: str) -> None:
        super().__init__(f'The input parameter "{name}" that is mandatory for processing this request is not supplied.')


class InvalidParameter(RpcError):
    code = "InvalidParameter"
    status = 400

    def __init__(self, name: str, detail: str = "") -> None:
        msg = f'The specified parameter "{name}" is not valid.'
        if detail:
            msg += f" {detail}"
        super().__init__(msg)


class ActionNotFound(RpcError):
    """An action the sandbox does not emulate: a distinct, fatal answer, never a 500."""

    code = "InvalidAction.NotFound"
    status = 404

    def __init__(self, product: str, version: str, action: str) -> None:
        super().__init__(
            f"Specified api is not found, please check your url and method. "
            f"(The acr-vpc-build sandbox does not emulate {product} {version} {action}.)"
        )


class VersionNotFound(RpcError):
    code = "InvalidVersion"
    status = 400

    def __init__(self, version: str) -> None:
        super().__init__(f'Specified parameter Version "{version}" is not valid.')


class IncompleteSignature(RpcError):
    code = "IncompleteSignature"
    status = 400
    message = "The request signature does not conform to Aliyun standards."


class SignatureDoesNotMatch(RpcError):
    code = "SignatureDoesNotMatch"
    status = 400

    def __init__(self, string_to_sign: str = "") -> None:
        super().__init__(
            "Specified signature is not matched with our calculation.",
            extra={"Recommend": "https://api.aliyun.com/troubleshoot?q=SignatureDoesNotMatch"},
        )


class InvalidAccessKeyIdNotFound(RpcError):
    code = "InvalidAccessKeyId.NotFound"
    status = 404
    message = "Specified access key is not found."


class SignatureNonceUsed(RpcError):
    code = "SignatureNonceUsed"
    status = 400
    message = "Specified signature nonce was used already."


class InvalidTimeStampExpired(RpcError):
    code = "InvalidTimeStamp.Expired"
    status = 400
    message = "Specified time stamp or date value is expired."


class Throttling(RpcError):
    code = "Throttling.User"
    status = 400
    message = "Request was denied due to user flow control."


class ServiceUnavailable(RpcError):
    code = "ServiceUnavailable"
    status = 503
    message = "The request has failed due to a temporary failure of the server."


class Forbidden(RpcError):
    code = "Forbidden.RAM"
    status = 403
    message = "User not authorized to operate on the specified resource, or this API doesn't support RAM."
