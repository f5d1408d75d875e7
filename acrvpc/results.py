"""Shared result storage: flow and task results in an S3-compatible bucket (Alibaba Cloud OSS, MinIO, S3).

A failed run retried from the Prefect UI resumes at the failure because the stages that completed
come back Cached from their persisted results (``flows/vpc_build.py``). Prefect writes those results
to ``$PREFECT_HOME/storage`` by default: on one host only. With workers on several hosts, a retry
that lands on another host must find them, so results go to a bucket every worker reaches, through
Prefect's own storage block for S3, prefect-aws's ``S3Bucket``, whose ``AwsCredentials`` keep the
secret key as a ``SecretStr`` (shown as ``**********`` in the UI, in ``repr`` and in logs) and whose
``AwsClientParameters.endpoint_url`` points it at any S3-compatible endpoint.

Set it up once per Prefect server (``pip install 'acr-vpc-build[s3]'`` first), the secret on stdin::

    printf %s "$OSS_SECRET" | python -m acrvpc.results \\
        --endpoint-url https://oss-cn-hangzhou.aliyuncs.com --bucket my-results \\
        --access-key-id LTAI... --region cn-hangzhou

then start **every** worker with the setting that command prints::

    PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK=s3-bucket/acrvpc-results prefect worker start --pool acr-vpc-build

(the flow-run processes a process worker starts inherit it; for Docker/Kubernetes pools put it in the
work pool's ``env`` job variable). Only the block's *name* is in the environment; the credentials
stay in the block on the server. Results are written under ``--folder`` (default ``acrvpc-results``)
in the bucket; the bucket must exist (create it in the OSS console, or with your S3 tool).

OSS speaks the S3 protocol with virtual-hosted-style addressing, which boto3 picks by itself for a
DNS-compatible bucket name on a host name endpoint (``--addressing-style`` overrides it, e.g.
``path`` for MinIO behind a bare address). Request checksums are sent only where the S3 API requires
them (``request_checksum_calculation=when_required``): recent boto3 adds CRC checksums to every
upload by default, which S3-compatible stores do not all accept.
"""

from __future__ import annotations

import argparse
import getpass
import re
import sys
from typing import Any, Literal
from urllib.parse import urlsplit

DEFAULT_BLOCK_NAME = "acrvpc-results"
DEFAULT_FOLDER = "acrvpc-results"
SETTING = "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK"
BLOCK_TYPE_SLUG = "s3-bucket"
INSTALL_HINT = "pip install 'acr-vpc-build[s3]' (it brings prefect-aws)"

AddressingStyle = Literal["auto", "virtual", "path"]
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_BLOCK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class ResultStorageError(ValueError):
    """A result-storage setting is wrong; the message names the field and the fix."""


def _check(
    endpoint_url: str,
    bucket: str,
    access_key_id: str,
    secret_access_key: str,
    folder: str,
    block_name: str,
    addressing_style: str,
) -> None:
    parts = urlsplit(endpoint_url or "")
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ResultStorageError(
            f"endpoint_url: {endpoint_url!r} is not an http(s) URL; give the bucket service's "
            "endpoint, e.g. https://oss-cn-hangzhou.aliyuncs.com"
        )
    if parts.path not in {"", "/"}:
        raise ResultStorageError(
            f"endpoint_url: {endpoint_url!r} has a path; give the endpoint only and the bucket "
            "as bucket (and a folder inside it as folder)"
        )
    if not _BUCKET.match(bucket or "") or ".." in bucket:
        raise ResultStorageError(
            f"bucket: {bucket!r} is not a bucket name (3-63 lowercase letters, digits, '-' "
            "and '.', starting and ending with a letter or digit), e.g. my-results"
        )
    if not access_key_id:
        raise ResultStorageError(
            "access_key_id: empty; give the AccessKey ID of a RAM user that may read and write the bucket"
        )
    if not secret_access_key:
        raise ResultStorageError("secret_access_key: empty; give the AccessKey secret of that RAM user")
    if ".." in folder.split("/") or "\\" in folder:
        raise ResultStorageError(f"folder: {folder!r} must be a path inside the bucket (no '..'), e.g. acrvpc-results")
    if not _BLOCK_NAME.match(block_name or ""):
        raise ResultStorageError(
            f"block_name: {block_name!r} must be lowercase letters, digits and '-', e.g. {DEFAULT_BLOCK_NAME}"
        )
    if addressing_style not in {"auto", "virtual", "path"}:
        raise ResultStorageError(f"addressing_style: {addressing_style!r} is not one of auto, virtual, path")


def result_storage_block(
    endpoint_url: str,
    bucket: str,
    access_key_id: str,
    secret_access_key: str,
    *,
    folder: str = DEFAULT_FOLDER,
    region: str | None = None,
    addressing_style: AddressingStyle = "auto",
    block_name: str = DEFAULT_BLOCK_NAME,
) -> Any:
    """The ``S3Bucket`` block for a bucket, not saved (checks every field first).

    Raises:
        ResultStorageError: a field is wrong (the message names it and the fix).
        RuntimeError: prefect-aws is not installed.
    """
    _check(endpoint_url, bucket, access_key_id, secret_access_key, folder, block_name, addressing_style)
    try:
        from prefect_aws import AwsCredentials, S3Bucket
        from prefect_aws.client_parameters import AwsClientParameters
    except ImportError as exc:
        raise RuntimeError(f"shared result storage needs prefect-aws: {INSTALL_HINT}") from exc
    config: dict[str, Any] = {
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
    }
    if addressing_style != "auto":
        config["s3"] = {"addressing_style": addressing_style}
    credentials = AwsCredentials(
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        region_name=region or "us-east-1",  # OSS ignores it for signing but boto3 needs one
        aws_client_parameters=AwsClientParameters(endpoint_url=endpoint_url.rstrip("/"), config=config),
    )
    return S3Bucket(bucket_name=bucket, bucket_folder=folder.strip("/"), credentials=credentials)


def save_result_storage(
    endpoint_url: str,
    bucket: str,
    access_key_id: str,
    secret_access_key: str,
    *,
    folder: str = DEFAULT_FOLDER,
    region: str | None = None,
    addressing_style: AddressingStyle = "auto",
    block_name: str = DEFAULT_BLOCK_NAME,
    overwrite: bool = True,
) -> str:
    """Save the result storage block on the Prefect server (``PREFECT_API_URL``) and return its slug.

    Set ``PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK=<the slug>`` on every worker (and in every work
    pool's ``env``): their flow runs then persist results in the bucket.

    Args:
        endpoint_url: the S3-compatible endpoint, e.g. ``https://oss-cn-hangzhou.aliyuncs.com``.
        bucket: an existing bucket.
        access_key_id: AccessKey ID allowed to read and write the bucket.
        secret_access_key: its secret (kept as a ``SecretStr`` in the block).
        folder: key prefix of the results inside the bucket.
        region: the bucket's region (``cn-hangzhou``); ``us-east-1`` when None.
        addressing_style: ``auto`` (boto3's choice), ``virtual`` or ``path``.
        block_name: name of the saved block.
        overwrite: replace a block of that name (the default: rerunning updates the setting).

    Returns:
        ``"s3-bucket/<block_name>"``, the value of ``PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK``.

    Raises:
        ResultStorageError: a field is wrong (the message names it and the fix).
        RuntimeError: prefect-aws is not installed.

    Example:
        >>> slug = save_result_storage("https://oss-cn-hangzhou.aliyuncs.com", "my-results",
        ...                            "LTAI...", secret, region="cn-hangzhou")
        >>> slug
        's3-bucket/acrvpc-results'
    """
    block = result_storage_block(
        endpoint_url,
        bucket,
        access_key_id,
        secret_access_key,
        folder=folder,
        region=region,
        addressing_style=addressing_style,
        block_name=block_name,
    )
    block.save(block_name, overwrite=overwrite)
    return f"{BLOCK_TYPE_SLUG}/{block_name}"


def main(argv: list[str] | None = None) -> int:
    """``python -m acrvpc.results``: save the block; the secret comes from stdin (or a prompt on a terminal)."""
    parser = argparse.ArgumentParser(
        prog="python -m acrvpc.results",
        description=(
            "Save the S3-compatible result storage block shared by every worker; the AccessKey secret is read "
            "from stdin (prompted on a terminal), never from the command line."
        ),
    )
    parser.add_argument("--endpoint-url", required=True, help="e.g. https://oss-cn-hangzhou.aliyuncs.com")
    parser.add_argument("--bucket", required=True, help="an existing bucket")
    parser.add_argument("--access-key-id", required=True)
    parser.add_argument("--folder", default=DEFAULT_FOLDER, help=f"key prefix in the bucket (default {DEFAULT_FOLDER})")
    parser.add_argument("--region", default=None, help="the bucket's region, e.g. cn-hangzhou")
    parser.add_argument("--addressing-style", default="auto", choices=["auto", "virtual", "path"])
    parser.add_argument("--block-name", default=DEFAULT_BLOCK_NAME)
    args = parser.parse_args(argv)
    if sys.stdin.isatty():
        secret = getpass.getpass("AccessKey secret: ")
    else:
        secret = sys.stdin.readline().strip()
    try:
        slug = save_result_storage(
            args.endpoint_url,
            args.bucket,
            args.access_key_id,
            secret,
            folder=args.folder,
            region=args.region,
            addressing_style=args.addressing_style,
            block_name=args.block_name,
        )
    except ResultStorageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"saved block {slug}; start every worker with:")
    print(f"{SETTING}={slug}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
