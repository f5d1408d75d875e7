"""Classifying a failed build: the API's stage (any case) first, the log tail as a hint."""

from __future__ import annotations

import pytest

from tasks.diagnose import classify, stage_name

CONNECT = "GIT_CLONE fatal: unable to access 'http://192.168.1.20/p/x.git/': Failed to connect to 192.168.1.20 port 80"
AUTH = "GIT_CLONE fatal: Authentication failed for 'http://192.168.1.20/p/x.git/'"
DOCKERFILE = 'BUILD ERROR: process "/bin/sh -c mvn -B -q package" did not complete successfully: exit code: 1'
MIRROR = "BUILD [ERROR] Could not transfer artifact: Connect to 192.168.1.30:8081 failed: Connection timed out"


@pytest.mark.parametrize(
    ("api", "stage"),
    [
        ("GIT_CLONE", "clone"),
        ("git_clone", "clone"),
        ("Build", "build"),
        ("PUSH", "push"),
        ("SCAN", "other"),
        ("", "other"),
    ],
)
def test_stage_names_are_compared_case_insensitively(api, stage):
    assert stage_name(api) == stage


@pytest.mark.parametrize(
    ("status", "api", "tail", "cause", "diagnose"),
    [
        ("FAILED", "GIT_CLONE", [CONNECT, "GIT_CLONE fetch stage failed"], "network", True),
        ("failed", "git_clone", ["GIT_CLONE remote: HTTP Basic: Access denied.", AUTH], "gitlab_auth", True),
        ("FAILED", "GIT_CLONE", ["GIT_CLONE fetch stage failed"], "network", True),
        (
            "FAILED",
            "BUILD",
            ["BUILD Dockerfile: /Dockerfile", DOCKERFILE, "BUILD build stage failed"],
            "image_build",
            False,
        ),
        ("FAILED", "BUILD", [MIRROR, "BUILD build stage failed"], "network", True),
        ("FAILED", "PUSH", ["PUSH denied: requested access to the resource is denied"], "push", False),
        ("CANCELED", "GIT_CLONE", [CONNECT], "canceled", False),
        ("TIMEOUT", "SCAN", ["SCAN scanning"], "timeout", False),
        ("FAILED", "SCAN", [AUTH], "gitlab_auth", True),
        ("FAILED", "SCAN", ["SCAN something odd"], "unknown", False),
    ],
)
def test_a_failed_build_is_classified_by_stage_then_log_hint(status, api, tail, cause, diagnose):
    failure = classify(status, api, tail)
    assert (failure.cause, failure.diagnose) == (cause, diagnose)


def test_a_success_is_not_classified():
    assert classify("success", "PUSH", []) is None
