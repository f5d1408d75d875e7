"""acrvpc.results: the shared result storage block is checked field by field and keeps its secret secret."""

from __future__ import annotations

import pytest

pytest.importorskip("prefect_aws")

from acrvpc.results import ResultStorageError, main, result_storage_block

GOOD = dict(
    endpoint_url="https://oss-cn-hangzhou.aliyuncs.com",
    bucket="my-results",
    access_key_id="LTAIexample",
    secret_access_key="very-secret-value",
)


def test_block_points_at_the_endpoint_and_hides_the_secret():
    block = result_storage_block(**GOOD, region="cn-hangzhou", folder="/runs/")
    creds = block.credentials
    assert block.bucket_name == "my-results" and block.bucket_folder == "runs"
    assert creds.aws_client_parameters.endpoint_url == "https://oss-cn-hangzhou.aliyuncs.com"
    assert creds.region_name == "cn-hangzhou"
    assert creds.aws_client_parameters.config["request_checksum_calculation"] == "when_required"
    assert creds.aws_secret_access_key.get_secret_value() == "very-secret-value"
    assert "very-secret-value" not in repr(block) and "very-secret-value" not in str(block.model_dump())


def test_path_addressing_style_for_bare_address_endpoints():
    block = result_storage_block(**{**GOOD, "endpoint_url": "http://10.0.0.5:9000"}, addressing_style="path")
    assert block.credentials.aws_client_parameters.config["s3"] == {"addressing_style": "path"}


@pytest.mark.parametrize(
    "field, value",
    [
        ("endpoint_url", "oss-cn-hangzhou.aliyuncs.com"),
        ("endpoint_url", "https://oss-cn-hangzhou.aliyuncs.com/my-results"),
        ("bucket", "My_Results"),
        ("bucket", "ab"),
        ("access_key_id", ""),
        ("secret_access_key", ""),
    ],
)
def test_bad_field_is_named(field, value):
    with pytest.raises(ResultStorageError, match=f"^{field}: "):
        result_storage_block(**{**GOOD, field: value})


@pytest.mark.parametrize(
    "field, kwargs",
    [
        ("folder", {"folder": "../up"}),
        ("block_name", {"block_name": "Has Spaces"}),
        ("addressing_style", {"addressing_style": "sideways"}),
    ],
)
def test_bad_option_is_named(field, kwargs):
    with pytest.raises(ResultStorageError, match=f"^{field}: "):
        result_storage_block(**GOOD, **kwargs)


def test_cli_refuses_bad_input_before_touching_the_server(capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("secret\n"))
    code = main(["--endpoint-url", "ftp://x", "--bucket", "my-results", "--access-key-id", "LTAI"])
    assert code == 2
    err = capsys.readouterr().err
    assert "endpoint_url" in err and "secret" not in err.replace("secret key", "")
