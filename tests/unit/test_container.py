"""The container image (Dockerfile, .dockerignore) and its Docker and Kubernetes deployments (deploy/*.yaml).

No image is built here (the machine has no container engine; the wheel the image installs is proven
by tests/e2e/test_wheel.py). These tests read the files: the Dockerfile's structure, and that the
deployment files name real module entrypoints, carry the example spec as a parameter the flows
accept, and set only job variables the pool types take, checked against the base job templates
Prefect ships for ``prefect work-pool create --type docker|kubernetes``.
"""

from __future__ import annotations

import importlib
import json
import re
import tomllib
from pathlib import Path

import prefect
import pytest
import yaml
from packaging.specifiers import SpecifierSet
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools import validate

from acrvpc.cloud.ratelimit import PRODUCTS, QPS_ENV
from acrvpc.deploy import ALL
from acrvpc.domain.spec import load_spec, parse_spec
from acrvpc.results import BLOCK_TYPE_SLUG, SETTING
from tests.conftest import EXAMPLE_SPEC, ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGES = {name.rstrip("*") for name in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]}
VARIANTS = {"prefect-docker.yaml": "docker", "prefect-kubernetes.yaml": "kubernetes"}  # file -> pool type
WORKER_METADATA = (
    Path(prefect.__file__).parent / "server" / "api" / "collections_data" / "views" / "aggregate-worker-metadata.json"
)


def _pinned(name: str) -> str:
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.split("==")[0].strip().lower() == name:
            return line.split("==", 1)[1].strip()
    raise AssertionError(f"constraints.txt pins no {name}")


def _instructions(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of a Dockerfile, continuation lines joined, comments dropped."""
    joined, current = [], ""
    for line in path.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        joined.append(current + line)
        current = ""
    assert not current, "the Dockerfile ends in a line continuation"
    return [
        (parts[0].upper(), parts[1].strip() if len(parts) > 1 else "")
        for parts in (line.strip().split(None, 1) for line in joined)
    ]


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction, args in _instructions(ROOT / "Dockerfile"):
        if instruction == "FROM":
            stages.append([])
        assert stages, f"{instruction} before the first FROM"
        stages[-1].append((instruction, args))
    return stages


class TestDockerfile:
    def test_every_stage_starts_from_prefects_image_at_the_pinned_version(self):
        wanted = _pinned("prefect")
        minimum = SpecifierSet(PYPROJECT["project"]["requires-python"])
        for stage in _stages():
            image = stage[0][1].split()[0]
            match = re.fullmatch(r"prefecthq/prefect:(\d+\.\d+\.\d+)-python(\d+\.\d+)", image)
            assert match, f"FROM {image}: use Prefect's official image, pinned (prefecthq/prefect:X.Y.Z-pythonA.B)"
            assert match[1] == wanted, f"FROM {image}: constraints.txt pins prefect=={wanted}"
            assert minimum.contains(match[2]), f"FROM {image}: requires-python is {minimum}"

    def test_the_first_stage_builds_the_wheel_from_the_packaged_sources_only(self):
        first, *rest = _stages()
        assert rest, "the wheel is built in a stage of its own"
        copied = {args.split()[0] for instruction, args in first if instruction == "COPY"}
        assert "." not in copied and "./" not in copied, "copy the packaged sources, not the whole checkout"
        assert PACKAGES <= copied and "pyproject.toml" in copied
        assert any(i == "RUN" and "pip wheel" in a and "--no-deps" in a for i, a in first)

    def test_the_final_stage_installs_the_wheel_with_constraints_and_runs_as_a_user(self):
        final = _stages()[-1]
        copies = [args.split() for instruction, args in final if instruction == "COPY"]
        for args in copies:
            sources = [a for a in args[:-1] if not a.startswith("--")]
            from_stage = any(a.startswith("--from=") for a in args)
            assert from_stage or sources == ["constraints.txt"], f"COPY {' '.join(args)}: no checkout in the image"
        constraints = next(args[-1] for args in copies if "constraints.txt" in args[:-1])
        [install] = [a for i, a in final if i == "RUN" and "pip install" in a]
        assert f"-c {constraints}" in install or f"--constraint {constraints}" in install
        assert ".whl" in install and "[s3]" in install
        users = [(n, a) for n, (i, a) in enumerate(final) if i == "USER"]
        assert users, "the image runs as root: add a USER"
        last_user_at, user = users[-1]
        assert user.split(":")[0] not in {"root", "0"}, f"USER {user}"
        assert re.fullmatch(r"\d+(:\d+)?", user), f"USER {user}: numeric, so Kubernetes' runAsNonRoot can check it"
        assert all(i != "RUN" for i, _ in final[last_user_at:]), "nothing runs as root after USER"

    def test_the_build_context_is_only_what_the_image_is_built_from(self):
        lines = [
            line.strip()
            for line in (ROOT / ".dockerignore").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        assert lines[0] == "*", ".dockerignore starts by excluding everything"
        included = {line[1:] for line in lines if line.startswith("!")}
        assert included == {"pyproject.toml", "README.md", "constraints.txt", *PACKAGES}


def _variant(name: str) -> dict:
    return yaml.safe_load((ROOT / "deploy" / name).read_text())


def _flow(entrypoint: str):
    module, _, attribute = entrypoint.rpartition(".")
    return getattr(importlib.import_module(module), attribute)


@pytest.mark.parametrize("name", sorted(VARIANTS))
class TestDeploymentVariants:
    def test_it_deploys_the_three_flows_as_acrvpc_deploy_does(self, name):
        config = _variant(name)
        assert config["prefect-version"] == _pinned("prefect")
        assert config["pull"] == [], "no pull step: the image holds the package"
        assert not config.get("build") and not config.get("push")
        spec = load_spec(EXAMPLE_SPEC)
        made = {}
        for deployment in config["deployments"]:
            entrypoint = deployment["entrypoint"]
            assert ":" not in entrypoint and not entrypoint.endswith(".py"), f"{entrypoint}: a module path"
            flow = _flow(entrypoint)
            assert isinstance(flow, prefect.Flow), entrypoint
            made[f"{flow.name}/{deployment['name']}"] = entrypoint
            assert f"spec:{deployment['name']}" in deployment["tags"]
        assert made == {target.name(spec): target.entrypoint for target in ALL}

    def test_each_deployment_carries_the_example_spec_as_a_parameter_its_flow_takes(self, name):
        for deployment in _variant(name)["deployments"]:
            parameters = deployment["parameters"]
            assert parse_spec(parameters["spec"], f"{name} {deployment['entrypoint']}") == load_spec(EXAMPLE_SPEC)
            schema = parameter_schema(_flow(deployment["entrypoint"]).fn).model_dump()
            # What a run adds (the receiver's project and ref) may be missing, unless the deployment has a schedule.
            errors = validate(parameters, schema, ignore_required=not deployment.get("schedules"))
            assert not errors, f"{deployment['entrypoint']}: {[e.message for e in errors]}"

    def test_its_job_variables_are_ones_the_pool_type_takes(self, name):
        pool_type = VARIANTS[name]
        metadata = json.loads(WORKER_METADATA.read_text())
        [template] = [
            workers[pool_type]["default_base_job_configuration"]
            for workers in metadata.values()
            if pool_type in workers
        ]
        accepted = template["variables"]
        for deployment in _variant(name)["deployments"]:
            pool = deployment["work_pool"]
            assert pool["name"].endswith(pool_type), pool["name"]
            variables = pool["job_variables"]
            unknown = set(variables) - set(accepted["properties"])
            assert not unknown, f"{name}: {sorted(unknown)} are not job variables of a {pool_type} pool"
            errors = validate(variables, accepted, ignore_required=True)
            assert not errors, f"{name}: {[e.message for e in errors]}"
            assert variables["image"] and "{{" not in variables["image"]
            if pool_type == "kubernetes":
                assert variables.get("namespace")

    def test_its_env_sets_result_storage_quotas_and_logs_and_no_secret(self, name):
        for deployment in _variant(name)["deployments"]:
            env = deployment["work_pool"]["job_variables"]["env"]
            assert re.fullmatch(rf"{BLOCK_TYPE_SLUG}/[a-z0-9][a-z0-9-]*", env[SETTING]), env[SETTING]
            for product in PRODUCTS:
                assert float(env[QPS_ENV.format(product=product.upper())]) > 0
            assert "acrvpc" in env["PREFECT_LOGGING_EXTRA_LOGGERS"].split(",")
            assert env["PREFECT_LOGGING_LEVEL"] in {"DEBUG", "INFO", "WARNING"}
            secretive = [key for key in env if re.search(r"SECRET|PASSWORD|TOKEN|AUTH|API_KEY|ACCESS_KEY", key)]
            assert not secretive, f"{name}: {secretive} belong in blocks or the worker's environment"
