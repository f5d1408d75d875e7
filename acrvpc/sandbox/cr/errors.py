"""Container Registry 2018-12-01 error answers: one class per error code.

CR reports business failures as HTTP 200 with ``IsSuccess=false`` and the code (``soft = True``);
parameter problems use the common ``MissingParameter`` / ``InvalidParameter`` (HTTP 400) from
:mod:`..core.errors`. ``INSTANCE_NOT_EXIST``, ``NAMESPACE_NOT_EXIST``, ``REPO_NOT_EXIST`` and
``INSTANCE_STATUS_NOT_SUPPORT`` are documented (Terraform provider); every other code here is an
assumption, listed in :mod:`.models`.
"""

from __future__ import annotations

from ..core.errors import RpcError


class CrError(RpcError):
    """A CR business error: HTTP 200, ``IsSuccess=false``, ``Code`` and ``Message``."""

    soft = True
    status = 200


class InstanceNotExist(CrError):
    code = "INSTANCE_NOT_EXIST"

    def __init__(self, instance_id: str) -> None:
        super().__init__(f"The instance {instance_id} does not exist.")


class InstanceStatusNotSupport(CrError):
    code = "INSTANCE_STATUS_NOT_SUPPORT"

    def __init__(self, instance_id: str, status: str) -> None:
        super().__init__(f"The instance {instance_id} is {status}; the operation needs it RUNNING.")


class NamespaceNotExist(CrError):
    code = "NAMESPACE_NOT_EXIST"

    def __init__(self, name: str) -> None:
        super().__init__(f"The namespace {name} does not exist.")


class NamespaceAlreadyExist(CrError):
    code = "NAMESPACE_ALREADY_EXIST"

    def __init__(self, name: str) -> None:
        super().__init__(f"The namespace {name} already exists.")


class RepoNotExist(CrError):
    code = "REPO_NOT_EXIST"

    def __init__(self, what: str) -> None:
        super().__init__(f"The repository {what} does not exist.")


class RepoAlreadyExist(CrError):
    code = "REPO_ALREADY_EXIST"

    def __init__(self, name: str) -> None:
        super().__init__(f"The repository {name} already exists.")


class RepoSourceCodeNotExist(CrError):
    """The image repository is not bound to a source code repository."""

    code = "REPO_SOURCE_CODE_NOT_EXIST"

    def __init__(self, repo_id: str) -> None:
        super().__init__(f"The repository {repo_id} is not bound to a source code repository.")


class RepoSourceCodeAlreadyExist(CrError):
    code = "REPO_SOURCE_CODE_ALREADY_EXIST"

    def __init__(self, repo_id: str) -> None:
        super().__init__(
            f"The repository {repo_id} is already bound to a source code repository; use UpdateRepoSourceCodeRepo."
        )


class SourceCodeAccountNotExist(CrError):
    """No code-source account of this type is bound to the instance (the console's "bind account")."""

    code = "SOURCE_CODE_ACCOUNT_NOT_EXIST"

    def __init__(self, instance_id: str, code_repo_type: str) -> None:
        super().__init__(f"No {code_repo_type} code source account is bound to the instance {instance_id}.")


class CodeRepoNotExist(CrError):
    code = "CODE_REPO_NOT_EXIST"

    def __init__(self, path: str, domain: str) -> None:
        super().__init__(
            f"The source code repository {path} does not exist at {domain} or the bound account cannot see it."
        )


class BuildRuleNotExist(CrError):
    code = "BUILD_RULE_NOT_EXIST"

    def __init__(self, rule_id: str) -> None:
        super().__init__(f"The build rule {rule_id} does not exist.")


class BuildRecordNotExist(CrError):
    code = "BUILD_RECORD_NOT_EXIST"

    def __init__(self, record_id: str) -> None:
        super().__init__(f"The build record {record_id} does not exist.")


class BuildRecordStatusNotSupport(CrError):
    code = "BUILD_RECORD_STATUS_NOT_SUPPORT"

    def __init__(self, record_id: str, status: str) -> None:
        super().__init__(f"The build record {record_id} is {status}; only a PENDING or BUILDING build can be canceled.")


class TagNotExist(CrError):
    code = "TAG_NOT_EXIST"

    def __init__(self, tag: str) -> None:
        super().__init__(f"The image tag {tag} does not exist.")
