"""The benchmarks' arithmetic (bench/common.py, bench/api_calls.py): percentiles, quota bounds, minimum calls,
and the fleet's diagnostics (the server's requests per endpoint, the machine's busy CPU)."""

from __future__ import annotations

import time

import pytest

from bench import common
from bench.api_calls import STAGES, minimum_calls
from bench.common import efficiency, lower_bound, percentile


class TestPercentile:
    def test_the_median_of_an_even_count_interpolates_between_the_middle_two(self):
        # Given four samples in any order
        samples = [4.0, 1.0, 3.0, 2.0]
        # When the 50th percentile is taken
        p50 = percentile(samples, 50)
        # Then it lies halfway between 2 and 3
        assert p50 == 2.5

    def test_p95_of_twenty_samples_interpolates_near_the_top(self):
        # Given samples 1..20
        samples = [float(i) for i in range(1, 21)]
        # When the 95th percentile is taken (rank 0.95 * 19 = 18.05)
        p95 = percentile(samples, 95)
        # Then it is 19 + 0.05 of the way to 20
        assert p95 == pytest.approx(19.05)

    def test_no_samples_is_an_error(self):
        with pytest.raises(ValueError):
            percentile([], 50)

    def test_a_percentile_outside_0_to_100_is_an_error(self):
        with pytest.raises(ValueError):
            percentile([1.0], 101)


class TestLowerBound:
    def test_the_product_with_the_most_calls_per_quota_sets_the_bound(self):
        # Given ECS calls at a lower quota than CR's
        calls = {"cr": 800, "ecs": 600, "gitlab": 5000}
        qps = {"cr": 40.0, "ecs": 20.0}
        # When the bound is computed
        bound, product = lower_bound(calls, qps)
        # Then ECS sets it (600 / 20 = 30 s > 800 / 40 = 20 s) and GitLab, without a quota, does not count
        assert (bound, product) == (30.0, "ecs")

    def test_no_quota_means_no_bound(self):
        assert lower_bound({"cr": 10}, {}) == (0.0, "")


class TestEfficiency:
    def test_efficiency_is_bound_over_wall(self):
        assert efficiency(40.0, 50.0) == pytest.approx(0.8)

    def test_a_zero_wall_time_is_an_error(self):
        with pytest.raises(ValueError):
            efficiency(1.0, 0.0)


class TestMinimumCalls:
    def test_a_fresh_run_of_the_example_spec_needs_44_calls(self, spec):
        # Given the example spec: 2 repositories in one namespace, 3 rules, 2 with build: true
        # When the least calls of a fresh run are computed
        least = minimum_calls(spec, fresh=True)
        # Then every stage has a minimum, and binding needs 2 + 2 x 3 + 3 = 11
        assert set(least) == set(STAGES)
        assert least["binding"][0] == 11
        assert sum(n for n, _ in least.values()) == 44

    def test_a_rerun_needs_only_reads_and_the_builds(self, spec):
        least = minimum_calls(spec, fresh=False)
        assert (least["link"][0], least["eni"][0], least["binding"][0], least["build"][0]) == (2, 2, 6, 10)


class TestImportingTheBenchmarks:
    def test_importing_a_benchmark_changes_no_environment_variable(self):
        # Given the test session's environment (call retries off, a hermetic PREFECT_HOME)
        import importlib
        import os

        before = dict(os.environ)
        # When every benchmark module is (re)imported, as a test importing its helpers would
        for name in ("api_calls", "overhead", "fleet", "trigger", "webhook_burst", "bare"):
            importlib.reload(importlib.import_module(f"bench.{name}"))
        # Then nothing in os.environ changed: only running a script sets the benchmarks' environment
        assert dict(os.environ) == before


class TestServerRequests:
    def test_requests_after_the_mark_are_counted_per_endpoint_and_run_with_ids_folded(self, tmp_path):
        log = tmp_path / "server.log"
        before = '10:00:00.000 | INFO | uvicorn.access - 127.0.0.1:1 - "GET /api/health HTTP/1.1" 200\n'
        log.write_text(before)
        run = "f9e36068-6bdd-4dc8-a3b0-c46ba851fe54"
        log.write_text(
            before
            + f'10:00:01.000 | INFO | uvicorn.access - 127.0.0.1:2 - "POST /api/flow_runs/{run}/set_state HTTP/1.1" 201\n'
            + '10:00:01.100 | INFO | uvicorn.access - 127.0.0.1:2 - "GET /api/csrf-token?client=x HTTP/1.1" 422\n'
            + f'10:00:01.200 | INFO | uvicorn.access - 127.0.0.1:3 - "POST /api/flow_runs/{run}/set_state HTTP/1.1" 201\n'
            + "10:00:01.300 | INFO | prefect.server - not a request line\n"
        )
        counts = common.server_requests(log, len(before), runs=2)
        assert counts == {"total": 1.5, "POST /api/flow_runs/{id}/set_state": 1.0, "GET /api/csrf-token": 0.5}


class TestCpuSampler:
    def test_the_busy_share_between_two_samples_and_a_dash_without_two(self):
        sampler = common.CpuSampler(clock=lambda: 0.0)
        sampler.samples = [(0.0, 100, 1000), (5.0, 400, 1600), (10.0, 400, 2200)]
        assert sampler.busy(0.0, 5.0) == "50%"
        assert sampler.busy(5.0, 10.0) == "0%"
        assert sampler.busy(6.0, 9.0) == "-"

    def test_it_samples_proc_stat_while_entered(self):
        with common.CpuSampler(clock=time.monotonic) as sampler:
            time.sleep(0.7)
        assert len(sampler.samples) >= 2
        assert all(total >= busy >= 0 for _, busy, total in sampler.samples)
