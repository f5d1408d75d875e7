"""The wheel is what ships: built, installed into a fresh venv with no checkout, it deploys and runs.

What a container image installs (Dockerfile) is the project's wheel, so this test proves the wheel on
its own: built from a copy of the sources (the checkout's ``build/`` is neither read nor written),
installed with ``pip install --no-deps`` into a new venv in a temporary directory, and used from
working directories that hold no checkout. The fresh venv sees the dependencies of the project's
venv through a ``.pth`` file naming a directory of links to the entries of that venv's
site-packages, minus the editable install (its ``.pth``, finder and dist-info): no dependency is
installed again, and before the wheel goes in, ``import flows`` fails there. Then, with the fresh
venv's Python only: the packages and their data resolve to its site-packages, ``acrvpc deploy``
deploys a copy of examples/sandbox.yaml (under a name of its own) to a process pool, and a worker of
that venv started in an empty directory runs ``vpc-build/<name>`` to Completed on the session server.
The container variants (deploy/prefect-docker.yaml, deploy/prefect-kubernetes.yaml) are deployed from
that venv with ``prefect deploy`` onto Docker and Kubernetes pools made from the base job templates
Prefect ships: the server checks their job variables against the pool's schema.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
from pathlib import Path

import prefect
import pytest
import yaml
from packaging.requirements import Requirement

from acrvpc.domain.spec import load_spec
from tests.conftest import EXAMPLE_SPEC, ROOT
from tests.e2e.prefect_server import VENV_BIN, stop_group
from tests.e2e.test_webhook import FINAL, api, wait_state

pytestmark = pytest.mark.e2e

PACKAGES = ("acrvpc", "flows", "tasks", "deployments")  # [tool.setuptools.packages.find] include
POOL = "wheel-pool"
SPEC_NAME = "wheel-build"  # not the example's name: deployments of other tests on the server are left alone


def _build_isolation() -> list[str]:
    """``--no-build-isolation`` when this venv satisfies the build requirements, else nothing (pip fetches them).

    With isolation pip installs setuptools and wheel into a temporary environment first (4-5 s here);
    without, the build takes about 1.5 s but needs the venv's setuptools to be new enough (>= 77 for
    pyproject's SPDX ``license`` string).
    """
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    for requirement in map(Requirement, requires):
        try:
            if not requirement.specifier.contains(importlib.metadata.version(requirement.name), prereleases=True):
                return []
        except importlib.metadata.PackageNotFoundError:
            return []
    return ["--no-build-isolation"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The project's wheel, built from a copy of what pyproject.toml packages."""
    work = tmp_path_factory.mktemp("wheel-build")
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            *_build_isolation(),
            "--wheel-dir",
            str(work / "dist"),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    print(f"wheel built in {time.monotonic() - started:.1f} s ({_build_isolation() or 'with build isolation'})")
    [built] = (work / "dist").glob("acr_vpc_build-*.whl")
    return built


class FreshVenv:
    """A venv in a temporary directory: the project's dependencies visible, the project itself not."""

    def __init__(self, root: Path):
        self.root = root
        self.python = root / "venv" / "bin" / "python"
        self.empty = root / "cwd"  # the working directory of every command: no checkout, no spec
        self.empty.mkdir()

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) with the fresh venv's bin first and no .venv on PATH."""
        env = dict(os.environ if base is None else base)
        env.pop("PYTHONPATH", None)
        env.pop("PYTHONHOME", None)
        env["PATH"] = os.pathsep.join(
            [str(self.python.parent), *(p for p in env.get("PATH", "").split(os.pathsep) if p and p != VENV_BIN)]
        )
        env["VIRTUAL_ENV"] = str(self.python.parent.parent)
        return env

    def run(
        self, *args: str, env: dict[str, str] | None = None, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [str(self.python), *args],
            cwd=self.empty,
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check:
            assert proc.returncode == 0, f"{args} failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        return proc

    @property
    def site_packages(self) -> Path:
        return Path(self.run("-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())


def _is_editable_install(entry: Path) -> bool:
    return (
        entry.name.startswith(("__editable__", "acr_vpc_build-", "acr_vpc_build."))
        or entry.suffix == ".pth"
        or entry.name == "__pycache__"
    )


@pytest.fixture(scope="module")
def fresh(wheel, tmp_path_factory) -> FreshVenv:
    """The wheel installed with --no-deps into a fresh venv that borrows the project venv's dependencies."""
    venv = FreshVenv(tmp_path_factory.mktemp("fresh-venv"))
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv.python.parent.parent)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    deps = venv.root / "deps"
    deps.mkdir()
    ours = Path(sysconfig.get_paths()["purelib"])
    for entry in ours.iterdir():
        if not _is_editable_install(entry):
            (deps / entry.name).symlink_to(entry)
    # A .pth line only adds a directory to sys.path: the .pth files in it are not processed, and the
    # editable install's are not even linked, so the checkout stays invisible.
    (venv.site_packages / "acrvpc-test-dependencies.pth").write_text(f"{deps}\n")
    assert ROOT.is_relative_to(venv.root) is False and not venv.root.is_relative_to(ROOT)

    before = venv.run("-c", "import prefect, typer; import flows", check=False)
    assert before.returncode != 0 and "No module named 'flows'" in before.stderr, before.stdout + before.stderr
    venv.run("-m", "pip", "install", "--no-deps", "--no-index", "--disable-pip-version-check", str(wheel))
    return venv


def test_the_wheel_carries_the_packages_and_their_data_outside_the_checkout(fresh):
    site = fresh.site_packages
    probe = fresh.run(
        "-c",
        """if True:
        import importlib.metadata, json
        import acrvpc, flows, tasks, deployments
        from acrvpc.domain.netcheck import zone_table
        from acrvpc.sandbox.world import load_scenario
        from flows.vpc_build import vpc_build
        print(json.dumps({
            "files": {m.__name__: m.__file__ for m in (acrvpc, flows, tasks, deployments)},
            "dist": str(importlib.metadata.distribution("acr-vpc-build").locate_file("")),
            "regions": sum(len(regions) for regions in zone_table()["clouds"].values()),
            "scenario": sorted(load_scenario()),
            "flow": vpc_build.name,
        }))
    """,
    )
    found = json.loads(probe.stdout)
    for module, path in found["files"].items():
        assert Path(path).is_relative_to(site), (module, path)
        assert not Path(path).resolve().is_relative_to(ROOT), (module, path)
    assert Path(found["dist"]) == site
    assert found["regions"] > 0 and found["scenario"] and found["flow"] == "vpc-build"

    # Every data file of the packages (what the code reads through importlib.resources: zones.json, the
    # sandbox's scenarios) is in the installed wheel, so package-data cannot silently miss a new one.
    data = sorted(
        str(p.relative_to(ROOT))
        for package in PACKAGES
        for p in (ROOT / package).rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    )
    assert "acrvpc/domain/zones.json" in data and "acrvpc/sandbox/scenarios/default.yaml" in data
    assert [name for name in data if not (site / name).is_file()] == []

    # The console script runs from the fresh venv too.
    proc = subprocess.run(
        [str(fresh.python.parent / "acrvpc"), "--help"],
        cwd=fresh.empty,
        env=fresh.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "deploy" in proc.stdout, proc.stdout + proc.stderr


def test_a_deployment_made_and_run_from_the_wheel_completes(prefect_server, worker_sandbox, fresh, tmp_path):
    spec_path = tmp_path / "wheel.yaml"  # a copy outside the checkout, under a name of its own
    spec_path.write_text(EXAMPLE_SPEC.read_text().replace("name: demo-build", f"name: {SPEC_NAME}", 1))
    assert load_spec(spec_path).name == SPEC_NAME
    server_env = prefect_server.env()
    fresh.run("-m", "prefect", "work-pool", "create", POOL, "--type", "process", env=server_env)
    worker = None
    ids: dict[str, str] = {}
    try:
        out = fresh.run("-m", "acrvpc", "deploy", str(spec_path), "--pool", POOL, "--json", env=server_env)
        ids = json.loads(out.stdout)["deployments"]
        assert set(ids) == {f"vpc-build/{SPEC_NAME}", f"build-on-push/{SPEC_NAME}", f"teardown/{SPEC_NAME}"}

        log = prefect_server.home / "worker-wheel.log"
        worker = subprocess.Popen(
            [str(fresh.python), "-m", "prefect", "worker", "start", "--pool", POOL, "--name", "wheel-worker"],
            cwd=fresh.empty,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=fresh.env(
                prefect_server.env(
                    ACRVPC_SANDBOX_URL=worker_sandbox.url,
                    PREFECT_WORKER_QUERY_SECONDS="1",
                    PREFECT_WORKER_PREFETCH_SECONDS="1",
                )
            ),
        )
        world = worker_sandbox.world
        world.reset()
        world.clock.set_scale(20.0)
        with api(prefect_server) as client:
            run = (
                client.post(
                    f"/deployments/{ids[f'vpc-build/{SPEC_NAME}']}/create_flow_run",
                    json={"parameters": {"start_builds": False}},
                )
                .raise_for_status()
                .json()
            )
        done = wait_state(prefect_server, run["id"], FINAL, timeout=240)
        assert done["state"]["type"] == "COMPLETED", (done["state"], log.read_text()[-3000:])
        assert done["parameters"]["spec"]["name"] == SPEC_NAME
        assert worker.poll() is None, log.read_text()[-3000:]
        assert str(ROOT) not in log.read_text()  # nothing of the checkout on the worker's path
        assert not [p for p in fresh.empty.rglob("*") if p.suffix in (".yaml", ".yml")]
    finally:
        if worker is not None:
            stop_group(worker)
        with api(prefect_server) as client:
            for deployment_id in ids.values():
                client.delete(f"/deployments/{deployment_id}")
            client.delete(f"/work_pools/{POOL}")


@pytest.mark.parametrize(
    "variant, pool_type", [("prefect-docker.yaml", "docker"), ("prefect-kubernetes.yaml", "kubernetes")]
)
def test_the_container_variants_deploy_from_the_wheel_onto_their_pool_types(
    prefect_server, fresh, tmp_path, variant, pool_type
):
    config = yaml.safe_load((ROOT / "deploy" / variant).read_text())
    pool = config["deployments"][0]["work_pool"]["name"]
    metadata = json.loads(
        (
            Path(prefect.__file__).parent
            / "server"
            / "api"
            / "collections_data"
            / "views"
            / "aggregate-worker-metadata.json"
        ).read_text()
    )
    [template] = [
        workers[pool_type]["default_base_job_configuration"] for workers in metadata.values() if pool_type in workers
    ]
    # Deployment names of their own (the file's are the example spec's, which test_deploy.py also deploys).
    name = f"container-{pool_type}"
    copy = tmp_path / variant
    copy.write_text(re.sub(r"(?m)^(  - name: )demo-build\b", rf"\g<1>{name}", (ROOT / "deploy" / variant).read_text()))
    ids: list[str] = []
    with api(prefect_server) as client:
        client.post(
            "/work_pools/", json={"name": pool, "type": pool_type, "base_job_template": template}
        ).raise_for_status()
    try:
        fresh.run(
            "-m", "prefect", "--no-prompt", "deploy", "--all", "--prefect-file", str(copy), env=prefect_server.env()
        )
        with api(prefect_server) as client:
            found = (
                client.post("/deployments/filter", json={"deployments": {"name": {"any_": [name]}}})
                .raise_for_status()
                .json()
            )
        ids = [d["id"] for d in found]
        assert len(found) == 3, found
        expected = config["deployments"][0]["work_pool"]["job_variables"]
        for deployment in found:
            assert deployment["work_pool_name"] == pool
            assert deployment["job_variables"] == expected
            assert deployment["entrypoint"].startswith("flows.") and ":" not in deployment["entrypoint"]
            assert not deployment["pull_steps"] and deployment["path"] is None
            assert deployment["parameters"]["spec"]["name"] == config["definitions"]["spec"]["name"]
    finally:
        with api(prefect_server) as client:
            for deployment_id in ids:
                client.delete(f"/deployments/{deployment_id}")
            client.delete(f"/work_pools/{pool}")
