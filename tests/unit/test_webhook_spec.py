"""The spec's webhook section: routes (project + ref glob -> repository and rule), and its errors."""

from __future__ import annotations

import pytest
import yaml

from acrvpc.domain.spec import SpecError, parse_spec, route_target, split_ref
from tests.conftest import EXAMPLE_SPEC


@pytest.fixture
def data() -> dict:
    return yaml.safe_load(EXAMPLE_SPEC.read_text())


def with_routes(data: dict, *routes: dict, **webhook) -> dict:
    data["webhook"] = {**data.get("webhook", {}), **webhook, "routes": list(routes)}
    return data


def route(project="platform/billing-api", ref="main", repository="apps/billing-api", rule="latest") -> dict:
    return {"project": project, "ref": ref, "repository": repository, "rule": rule}


def problems_of(data: dict) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        parse_spec(data, "t.yaml")
    return dict(info.value.problems)


class TestSplitRef:
    @pytest.mark.parametrize(
        ("ref", "parsed"),
        [
            ("refs/heads/main", ("branch", "main")),
            ("refs/heads/feature/x", ("branch", "feature/x")),
            ("refs/tags/v1.0.0", ("tag", "v1.0.0")),
            ("refs/merge-requests/1/head", None),
            ("main", None),
            ("refs/heads/", None),
        ],
    )
    def test_branch_and_tag_refs(self, ref, parsed):
        assert split_ref(ref) == parsed


class TestRouteFor:
    def test_example_routes_load(self, data):
        spec = parse_spec(data)
        assert spec.webhook.deployment == "build-on-push/webhook"
        assert spec.webhook.projects == ["platform/billing-api", "platform/web-frontend"]

    @pytest.mark.parametrize(
        ("project", "ref", "expected"),
        [
            ("platform/billing-api", "refs/heads/main", ("apps/billing-api", "latest")),
            ("Platform/Billing-API", "refs/heads/main", ("apps/billing-api", "latest")),
            ("platform/web-frontend", "refs/tags/release-v2.0", ("apps/web-frontend", "release")),
            ("platform/web-frontend", "refs/heads/main", ("apps/web-frontend", "latest")),
            ("platform/billing-api", "refs/tags/main", None),  # a tag named like a routed branch
            ("platform/web-frontend", "refs/heads/release-v2.0", None),  # a branch named like a routed tag
            ("platform/web-frontend", "refs/tags/v2.0", None),
            ("secret/vault-tools", "refs/heads/main", None),
            ("platform/billing-api", "main", None),  # not a full ref
        ],
    )
    def test_first_matching_route(self, data, project, ref, expected):
        spec = parse_spec(data)
        found = spec.webhook.route_for(project, ref)
        assert (found and (found.repository, found.rule)) == (expected or None)

    def test_bare_and_refs_heads_patterns_match_the_same_branches(self, data):
        spec = parse_spec(with_routes(data, route(ref="refs/heads/release-*")))
        assert spec.webhook.route_for("platform/billing-api", "refs/heads/release-1") is not None
        assert spec.webhook.route_for("platform/billing-api", "refs/heads/main") is None

    def test_first_match_wins(self, data):
        spec = parse_spec(
            with_routes(
                data, route(ref="*"), route(project="platform/web-frontend", ref="*", repository="apps/web-frontend")
            )
        )
        assert spec.webhook.route_for("platform/web-frontend", "refs/heads/x").repository == "apps/web-frontend"

    def test_route_target_is_the_named_rule(self, data):
        spec = parse_spec(data)
        repo, rule = route_target(spec, spec.webhook.routes[2])
        assert repo.full_name == "apps/web-frontend" and rule.image_tag == "release"

    def test_rule_by_push_name(self, data):
        spec = parse_spec(
            with_routes(
                data,
                route(
                    project="platform/web-frontend",
                    ref="refs/tags/release-v*",
                    repository="apps/web-frontend",
                    rule="release-v*",
                ),
            )
        )
        assert route_target(spec, spec.webhook.routes[0])[1].image_tag == "release"

    def test_no_webhook_section_means_no_routes(self, data):
        del data["webhook"]
        spec = parse_spec(data)
        assert spec.webhook.routes == [] and spec.webhook.route_for("platform/billing-api", "refs/heads/main") is None


class TestErrors:
    def test_unknown_repository_names_the_field_and_the_choices(self, data):
        problems = problems_of(with_routes(data, route(repository="apps/nope")))
        assert "apps/billing-api" in problems["webhook.routes[0].repository"]

    def test_rule_not_in_the_repository_lists_its_rules(self, data):
        problems = problems_of(with_routes(data, route(rule="stable")))
        assert "image_tag (latest)" in problems["webhook.routes[0].rule"]

    def test_ambiguous_rule(self, data):
        data["repositories"][0]["build_rules"].append(
            {"push_type": "GIT_BRANCH", "push_name": "latest", "image_tag": "edge"}
        )
        problems = problems_of(with_routes(data, route(rule="latest")))
        assert "names 2 build rules" in problems["webhook.routes[0].rule"]

    def test_tag_pattern_to_a_branch_rule(self, data):
        problems = problems_of(with_routes(data, route(ref="refs/tags/v*")))
        assert "GIT_TAG" in problems["webhook.routes[0].ref"]

    def test_branch_pattern_to_a_tag_rule(self, data):
        problems = problems_of(
            with_routes(
                data,
                route(project="platform/web-frontend", ref="release-*", repository="apps/web-frontend", rule="release"),
            )
        )
        assert "refs/tags/" in problems["webhook.routes[0].ref"]

    @pytest.mark.parametrize("ref", ["refs/merge-requests/*", "", "refs/heads/"])
    def test_refs_other_than_heads_and_tags(self, data, ref):
        assert "webhook.routes[0].ref" in problems_of(with_routes(data, route(ref=ref)))

    def test_project_without_group(self, data):
        assert "group" in problems_of(with_routes(data, route(project="billing-api")))["webhook.routes[0].project"]

    def test_url_without_scheme(self, data):
        assert "scheme" in problems_of(with_routes(data, route(), url="hooks.example.com"))["webhook.url"]

    def test_deployment_name(self, data):
        assert (
            "flow-name/deployment-name"
            in problems_of(with_routes(data, route(), deployment="webhook"))["webhook.deployment"]
        )

    def test_register_webhook_needs_a_url_and_routes(self, data):
        data["gitlab"]["register_webhook"] = True
        data["webhook"] = {}
        problems = problems_of(data)
        assert "gitlab.register_webhook" in problems["webhook.url"]
        assert "gitlab.register_webhook" in problems["webhook.routes"]

    def test_unknown_webhook_field(self, data):
        data["webhook"]["secret"] = "inline"
        assert "webhook.secret" in problems_of(data)


class TestHardeningSettings:
    def test_defaults_are_unsigned_15000_per_minute_and_a_five_minute_window(self, data):
        # Given the example spec, which sets none of them
        webhook = parse_spec(data, "t.yaml").webhook
        # Then signing is off, the limit is 15000/minute per source (above GitLab.com's busiest plan) and the
        # replay window 300 s
        assert webhook.signing_secret_block is None
        assert (webhook.rate_limit, webhook.replay_window_seconds, webhook.trusted_proxies) == ("15000/minute", 300, [])

    def test_settings_are_read(self, data):
        data["webhook"].update(
            signing_secret_block="gitlab-webhook-signing",
            rate_limit="1000/second",
            replay_window_seconds=60,
            trusted_proxies=["10.0.0.5", "10.1.0.0/16"],
        )
        webhook = parse_spec(data, "t.yaml").webhook
        assert webhook.signing_secret_block == "gitlab-webhook-signing"
        assert (webhook.rate_limit, webhook.replay_window_seconds) == ("1000/second", 60)
        assert webhook.trusted_proxies == ["10.0.0.5/32", "10.1.0.0/16"]

    @pytest.mark.parametrize("limit", ["fast", "0/second", "1/minute;2/hour", ""])
    def test_a_bad_rate_limit_names_the_field_and_the_form(self, data, limit):
        data["webhook"]["rate_limit"] = limit
        assert "60/minute" in problems_of(data)["webhook.rate_limit"]

    @pytest.mark.parametrize("window", [0, 301])
    def test_the_replay_window_is_one_to_300_seconds(self, data, window):
        data["webhook"]["replay_window_seconds"] = window
        assert "webhook.replay_window_seconds" in problems_of(data)

    def test_a_trusted_proxy_must_be_an_address(self, data):
        data["webhook"]["trusted_proxies"] = ["proxy.internal"]
        assert "CIDR" in problems_of(data)["webhook.trusted_proxies[0]"]

    def test_the_signing_secret_is_never_inline(self, data):
        data["webhook"]["signing_secret"] = "whsec_inline"
        assert "webhook.signing_secret" in problems_of(data)
