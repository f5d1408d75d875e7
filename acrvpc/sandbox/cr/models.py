"""State and rules of the Container Registry 2018-12-01 emulation (no HTTP here).

State: instances (with the code-source accounts bound in the console), namespaces, repositories
with their source-code binding and build rules, and build records (see :mod:`.builds`).

Cross-backend seams: a build asks ``world.ecs.reaches(build_service_account_id, ip, port)`` once,
when it starts, whether the registry's builders reach the bound GitLab; CreateRepoSourceCodeRepo
and builds ask ``world.gitlab.project_by_path(path)`` whether the GitLab project exists (only when
the GitLab backend has projects loaded). :meth:`CrBackend.bind_code_source` is the console's
"bind account" step (no public API) for admin routes and tests.

Assumptions (the real behaviour is not documented):
  - Error codes other than INSTANCE_NOT_EXIST, NAMESPACE_NOT_EXIST, REPO_NOT_EXIST and
    INSTANCE_STATUS_NOT_SUPPORT are chosen here, all HTTP 200 + IsSuccess=false:
    NAMESPACE_ALREADY_EXIST, REPO_ALREADY_EXIST (create a duplicate); REPO_SOURCE_CODE_NOT_EXIST
    (GetRepoSourceCodeRepo/UpdateRepoSourceCodeRepo/CreateBuildRecordByRule on a repository not
    bound to source code); REPO_SOURCE_CODE_ALREADY_EXIST (CreateRepoSourceCodeRepo on a bound
    repository); SOURCE_CODE_ACCOUNT_NOT_EXIST (no code-source account of that type bound to the
    instance); CODE_REPO_NOT_EXIST (the project is unknown to the bound GitLab);
    BUILD_RULE_NOT_EXIST; BUILD_RECORD_NOT_EXIST; BUILD_RECORD_STATUS_NOT_SUPPORT (cancel a
    finished build); TAG_NOT_EXIST (GetRepoTag of a tag no build has pushed).
  - A build that ends SUCCESS pushes its tag: GetRepoTag then answers it with ``Digest`` as bare
    lower-case hex (no ``sha256:`` prefix), ``ImageId`` (the digest's first 64 hex digits of a
    second hash), ``Status`` NORMAL, ``ImageSize`` (int bytes), ``ImageCreate``/``ImageUpdate``
    (int ms). The latest successful build of a tag wins.
  - Write actions on an instance that is not RUNNING answer INSTANCE_STATUS_NOT_SUPPORT; reads work.
  - Build status strings are upper case PENDING, BUILDING, SUCCESS, FAILED, CANCELED everywhere.
  - GetRepoBuildRecord.EndTime (and ListRepoBuildRecord's) is 0 ("0") while a build runs.
  - ListRepoBuildRecordLog: ``Offset`` is the number of lines to skip (0 = from line 1); without it,
    ``PageNo``/``PageSize`` select the page. A page holds at most ``log_page_size`` (100) lines;
    ``TotalCount`` is the number of lines printed so far.
  - ListRepoBuildRule entries carry no DestArtifactType (its values are not documented), and
    identical build rules may coexist (no duplicate check).
  - GetRepoSourceCodeRepo.CodeRepoDomain is the domain of the instance's bound account of that
    type at read time (the domain stored at binding time once the account is gone).
  - ListInstance lists the instances of the sandbox's region; its CreateTime/ModifiedTime are
    ISO 8601 strings while GetInstance's are int ms (as the SDK models type them).
  - How a build fails when a hop of its path is broken (decided once, when it starts, in this order;
    the build then ends FAILED at the end of the stage named, its log tail as shown):
    * no network path (:mod:`..ecs.reach`: the build ENI is missing, not ``InUse`` or not attachable by
      the build service account; the ENI's group drops egress to GitLab's IP:port; GitLab's ECS group
      does not admit ``100.104.0.0/16`` on the port; a data-center GitLab's VBR has no return route for
      it; or the instance's code source is bound to another endpoint, whose address the link does not
      admit): ``GIT_CLONE``, git's ``fatal: unable to access '<url>/': Failed to connect to <ip> port
      <port>: Connection timed out`` and ``error: the build network cannot reach <ip>:<port>: <reason>``;
    * GitLab refuses the bound account (when the GitLab backend has users): the account's user is
      blocked or holds no token that is neither revoked nor expired with ``api``, ``read_repository``
      or ``write_repository`` (the console keeps no token of its own: the account's tokens stand for
      the one typed into the console): ``GIT_CLONE``, ``remote: HTTP Basic: Access denied. ...`` and
      ``fatal: Authentication failed for '<url>/'``;
    * the project is unknown to GitLab: ``GIT_CLONE``, ``remote: The project you were looking for could
      not be found ...`` and ``fatal: repository '<url>/' not found``;
    * ``cr.builds.fail_repos``: the Dockerfile's ``RUN mvn ...`` step fails: ``BUILD``, Maven's
      ``[ERROR] ... Compilation failure`` and ``ERROR: process "..." did not complete successfully``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..core.world_view import ServiceWorld
from ..ecs.models import EcsBackend
from ..gitlab.models import GitLabBackend
from . import builds
from .builds import BuildRecord
from .errors import (
    BuildRecordNotExist,
    BuildRecordStatusNotSupport,
    BuildRuleNotExist,
    CodeRepoNotExist,
    InstanceNotExist,
    InstanceStatusNotSupport,
    NamespaceAlreadyExist,
    NamespaceNotExist,
    RepoAlreadyExist,
    RepoNotExist,
    RepoSourceCodeAlreadyExist,
    RepoSourceCodeNotExist,
    SourceCodeAccountNotExist,
    TagNotExist,
)


class CrWorld(ServiceWorld, Protocol):
    """What the CR backend uses of the world: ECS (do builders reach GitLab?) and GitLab (does the project exist?)."""

    ecs: EcsBackend
    gitlab: GitLabBackend


CODE_REPO_TYPES = ("GITHUB", "GITLAB", "GITEE", "CODE", "CODEUP")
_CLONE_SCOPES = {"api", "read_repository", "write_repository"}  # a token that may clone over HTTP
_CREATED_MS = 1_700_000_000_000  # creation time of seeded resources


@dataclass
class CodeSource:
    """A code-source account bound in the console (type, domain, user)."""

    type: str
    domain: str
    username: str = ""


@dataclass
class Instance:
    instance_id: str
    name: str
    specification: str = "Enterprise_Standard"
    status: str = "RUNNING"
    region: str = "cn-hangzhou"
    resource_group_id: str = "rg-acfmsandbox0001"
    create_ms: int = _CREATED_MS
    code_sources: list[CodeSource] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Namespace:
    namespace_id: str
    instance_id: str
    name: str
    auto_create_repo: bool = False
    default_repo_type: str = "PRIVATE"


@dataclass
class SourceBinding:
    code_repo_type: str
    namespace: str
    name: str
    domain: str
    auto_build: bool = False
    oversea_build: bool = False
    disable_cache_build: bool = False
    code_repo_id: str = ""


@dataclass
class BuildRule:
    build_rule_id: str
    push_type: str
    push_name: str
    image_tag: str
    dockerfile_location: str = "/"
    dockerfile_name: str = "Dockerfile"
    platforms: list[str] = field(default_factory=lambda: ["linux/amd64"])
    build_args: list[str] = field(default_factory=list)


@dataclass
class Repository:
    repo_id: str
    instance_id: str
    namespace: str
    name: str
    repo_type: str = "PRIVATE"
    summary: str = ""
    detail: str = ""
    tag_immutability: bool = False
    create_ms: int = _CREATED_MS
    modified_ms: int = _CREATED_MS
    source: SourceBinding | None = None
    rules: dict[str, BuildRule] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return f"{self.namespace}/{self.name}"


def host_port(domain: str) -> tuple[str, int]:
    """``http://192.168.1.20`` -> ``("192.168.1.20", 80)``; https defaults to 443."""
    parts = urlsplit(domain if "//" in domain else f"http://{domain}")
    default = 443 if parts.scheme == "https" else 80
    return parts.hostname or "", parts.port or default


class CrBackend:
    def __init__(self, world: CrWorld) -> None:
        self.world = world
        self.instances: dict[str, Instance] = {}
        self.namespaces: dict[tuple[str, str], Namespace] = {}  # (instance, name)
        self.repos: dict[str, Repository] = {}  # repo id
        self.records: dict[str, BuildRecord] = {}  # build record id
        self.build_service_account_id = 0
        self.stages: list[dict[str, Any]] = list(builds.DEFAULT_STAGES)
        self.pending_seconds = 1.0
        self.fail_repos: set[str] = set()
        self.hang_repos: set[str] = set()  # builds of these never end (until canceled)
        self.log_page_size = 100

    # -- seeding ----------------------------------------------------------------------------
    def load(self, section: dict[str, Any]) -> None:
        """Seed state from the scenario's ``cr:`` section."""
        self.build_service_account_id = int(section.get("build_service_account_id") or 0)
        b = section.get("builds") or {}
        self.stages = list(b.get("stages") or builds.DEFAULT_STAGES)
        self.pending_seconds = float(b.get("pending_seconds", 1))
        self.fail_repos = set(b.get("fail_repos") or [])
        self.hang_repos = set(b.get("hang_repos") or [])
        self.log_page_size = int(b.get("log_page_size", 100))
        for i in section.get("instances", []):
            inst = Instance(
                i["instance_id"],
                i.get("name", i["instance_id"]),
                i.get("specification", "Enterprise_Standard"),
                i.get("status", "RUNNING"),
                i.get("region", self.world.region),
            )
            inst.tags = {str(k): str(v) for k, v in (i.get("tags") or {}).items()}
            inst.code_sources = [
                CodeSource(str(c.get("type", "GITLAB")).upper(), str(c["domain"]).rstrip("/"), c.get("username", ""))
                for c in i.get("code_sources", [])
            ]
            self.instances[inst.instance_id] = inst
            for n in i.get("namespaces", []):
                n = {"name": n} if isinstance(n, str) else n
                self.add_namespace(
                    inst.instance_id,
                    n["name"],
                    bool(n.get("auto_create_repo", False)),
                    n.get("default_repo_type", "PRIVATE"),
                    n.get("namespace_id"),
                )
            for r in i.get("repositories", []):
                self._seed_repo(inst, r)

    def _seed_repo(self, inst: Instance, r: dict[str, Any]) -> None:
        if (inst.instance_id, r["namespace"]) not in self.namespaces:
            self.add_namespace(inst.instance_id, r["namespace"])
        repo = Repository(
            r.get("repo_id") or self.world.new_id("crr"),
            inst.instance_id,
            r["namespace"],
            r["name"],
            r.get("repo_type", "PRIVATE"),
            r.get("summary", ""),
        )
        self.repos[repo.repo_id] = repo
        s = r.get("source")
        if s:
            ctype = str(s.get("type", "GITLAB")).upper()
            account = self.code_source(inst, ctype)
            repo.source = SourceBinding(
                ctype,
                s["namespace"],
                s["name"],
                account.domain if account else "",
                bool(s.get("auto_build", False)),
                bool(s.get("oversea_build", False)),
                bool(s.get("disable_cache_build", False)),
            )
        for rule in r.get("rules", []):
            self.add_rule(
                repo,
                rule["push_type"],
                rule["push_name"],
                rule["image_tag"],
                rule.get("dockerfile_location", "/"),
                rule.get("dockerfile_name", "Dockerfile"),
                list(rule.get("platforms") or ["linux/amd64"]),
                list(rule.get("build_args") or []),
                rule.get("build_rule_id"),
            )

    # -- instances and code sources ----------------------------------------------------------
    def instance(self, instance_id: str) -> Instance:
        inst = self.instances.get(instance_id)
        if inst is None:
            raise InstanceNotExist(instance_id)
        return inst

    def writable_instance(self, instance_id: str) -> Instance:
        inst = self.instance(instance_id)
        if inst.status != "RUNNING":
            raise InstanceStatusNotSupport(instance_id, inst.status)
        return inst

    def list_instances(self, name: str | None = None, status: str | None = None) -> list[Instance]:
        return [
            i
            for i in self.instances.values()
            if i.region == self.world.region and (not name or name in i.name) and (not status or i.status == status)
        ]

    @staticmethod
    def code_source(inst: Instance, code_repo_type: str) -> CodeSource | None:
        return next((c for c in inst.code_sources if c.type == code_repo_type.upper()), None)

    def bind_code_source(self, instance_id: str, code_repo_type: str, domain: str, username: str) -> CodeSource:
        """The console's "bind account": replace the instance's account of this type."""
        inst = self.instance(instance_id)
        ctype = code_repo_type.upper()
        inst.code_sources = [c for c in inst.code_sources if c.type != ctype]
        source = CodeSource(ctype, domain.rstrip("/"), username)
        inst.code_sources.append(source)
        return source

    def unbind_code_source(self, instance_id: str, code_repo_type: str) -> None:
        inst = self.instance(instance_id)
        inst.code_sources = [c for c in inst.code_sources if c.type != code_repo_type.upper()]

    # -- namespaces ---------------------------------------------------------------------------
    def add_namespace(
        self,
        instance_id: str,
        name: str,
        auto_create_repo: bool = False,
        default_repo_type: str = "PRIVATE",
        namespace_id: str | None = None,
    ) -> Namespace:
        if (instance_id, name) in self.namespaces:
            raise NamespaceAlreadyExist(name)
        ns = Namespace(namespace_id or self.world.new_id("crn"), instance_id, name, auto_create_repo, default_repo_type)
        self.namespaces[(instance_id, name)] = ns
        return ns

    def namespace(self, instance_id: str, name: str | None = None, namespace_id: str | None = None) -> Namespace:
        self.instance(instance_id)
        for ns in self.namespaces.values():
            if ns.instance_id == instance_id and (
                (name and ns.name == name) or (namespace_id and ns.namespace_id == namespace_id)
            ):
                return ns
        raise NamespaceNotExist(name or namespace_id or "")

    def list_namespaces(self, instance_id: str, name: str | None = None) -> list[Namespace]:
        self.instance(instance_id)
        return [
            ns for ns in self.namespaces.values() if ns.instance_id == instance_id and (not name or ns.name == name)
        ]

    # -- repositories -------------------------------------------------------------------------
    def create_repository(
        self,
        instance_id: str,
        namespace: str,
        name: str,
        repo_type: str,
        summary: str,
        detail: str = "",
        tag_immutability: bool = False,
    ) -> Repository:
        self.writable_instance(instance_id)
        self.namespace(instance_id, namespace)
        if any(
            r.instance_id == instance_id and r.namespace == namespace and r.name == name for r in self.repos.values()
        ):
            raise RepoAlreadyExist(f"{namespace}/{name}")
        now = self.world.clock.epoch_ms()
        repo = Repository(
            self.world.new_id("crr"),
            instance_id,
            namespace,
            name,
            repo_type,
            summary,
            detail,
            tag_immutability,
            now,
            now,
        )
        self.repos[repo.repo_id] = repo
        return repo

    def repository(
        self, instance_id: str, repo_id: str | None = None, namespace: str | None = None, name: str | None = None
    ) -> Repository:
        self.instance(instance_id)
        if repo_id:
            repo = self.repos.get(repo_id)
            if repo is not None and repo.instance_id == instance_id:
                return repo
            raise RepoNotExist(repo_id)
        for repo in self.repos.values():
            if repo.instance_id == instance_id and repo.namespace == namespace and repo.name == name:
                return repo
        raise RepoNotExist(f"{namespace}/{name}")

    def list_repositories(
        self, instance_id: str, namespace: str | None = None, name: str | None = None, status: str | None = None
    ) -> list[Repository]:
        self.instance(instance_id)
        if status and status not in ("NORMAL", "ALL"):
            return []
        return [
            r
            for r in self.repos.values()
            if r.instance_id == instance_id
            and (not namespace or r.namespace == namespace)
            and (not name or r.name == name)
        ]

    # -- source-code binding ------------------------------------------------------------------
    def source_domain(self, repo: Repository) -> str:
        assert repo.source is not None
        account = self.code_source(self.instance(repo.instance_id), repo.source.code_repo_type)
        return account.domain if account else repo.source.domain

    def source_binding(self, instance_id: str, repo_id: str) -> SourceBinding:
        repo = self.repository(instance_id, repo_id)
        if repo.source is None:
            raise RepoSourceCodeNotExist(repo_id)
        return repo.source

    def _check_code_repo(self, inst: Instance, code_repo_type: str, namespace: str, name: str) -> CodeSource:
        account = self.code_source(inst, code_repo_type)
        if account is None:
            raise SourceCodeAccountNotExist(inst.instance_id, code_repo_type)
        if code_repo_type == "GITLAB" and self._gitlab_knows_projects():
            if self.world.gitlab.project_by_path(f"{namespace}/{name}") is None:
                raise CodeRepoNotExist(f"{namespace}/{name}", account.domain)
        return account

    def _gitlab_knows_projects(self) -> bool:
        return bool(getattr(self.world.gitlab, "projects", None))

    def bind_source(
        self,
        instance_id: str,
        repo_id: str,
        code_repo_type: str,
        namespace: str,
        name: str,
        auto_build: bool,
        oversea_build: bool,
        disable_cache_build: bool,
    ) -> SourceBinding:
        inst = self.writable_instance(instance_id)
        repo = self.repository(instance_id, repo_id)
        if repo.source is not None:
            raise RepoSourceCodeAlreadyExist(repo_id)
        account = self._check_code_repo(inst, code_repo_type, namespace, name)
        repo.source = SourceBinding(
            code_repo_type,
            namespace,
            name,
            account.domain,
            auto_build,
            oversea_build,
            disable_cache_build,
            self.world.new_id("crcr"),
        )
        repo.modified_ms = self.world.clock.epoch_ms()
        return repo.source

    def update_source(
        self,
        instance_id: str,
        repo_id: str,
        code_repo_type: str,
        namespace: str,
        name: str,
        auto_build: bool | None,
        oversea_build: bool | None,
        disable_cache_build: bool | None,
    ) -> SourceBinding:
        inst = self.writable_instance(instance_id)
        repo = self.repository(instance_id, repo_id)
        if repo.source is None:
            raise RepoSourceCodeNotExist(repo_id)
        account = self._check_code_repo(inst, code_repo_type, namespace, name)
        src = repo.source
        src.code_repo_type, src.namespace, src.name, src.domain = code_repo_type, namespace, name, account.domain
        if auto_build is not None:
            src.auto_build = auto_build
        if oversea_build is not None:
            src.oversea_build = oversea_build
        if disable_cache_build is not None:
            src.disable_cache_build = disable_cache_build
        repo.modified_ms = self.world.clock.epoch_ms()
        return src

    # -- build rules --------------------------------------------------------------------------
    def add_rule(
        self,
        repo: Repository,
        push_type: str,
        push_name: str,
        image_tag: str,
        dockerfile_location: str = "/",
        dockerfile_name: str = "Dockerfile",
        platforms: list[str] | None = None,
        build_args: list[str] | None = None,
        build_rule_id: str | None = None,
    ) -> BuildRule:
        rule = BuildRule(
            build_rule_id or self.world.new_id("crbr"),
            push_type,
            push_name,
            image_tag,
            dockerfile_location,
            dockerfile_name,
            list(platforms or ["linux/amd64"]),
            list(build_args or []),
        )
        repo.rules[rule.build_rule_id] = rule
        return rule

    def rule(self, repo: Repository, build_rule_id: str) -> BuildRule:
        rule = repo.rules.get(build_rule_id)
        if rule is None:
            raise BuildRuleNotExist(build_rule_id)
        return rule

    # -- builds -------------------------------------------------------------------------------
    def start_build(self, instance_id: str, repo_id: str, build_rule_id: str) -> BuildRecord:
        inst = self.writable_instance(instance_id)
        repo = self.repository(instance_id, repo_id)
        rule = self.rule(repo, build_rule_id)
        if repo.source is None:
            raise RepoSourceCodeNotExist(repo_id)
        now = self.world.clock.now()
        record = BuildRecord(
            str(uuid.uuid4()),
            instance_id,
            repo_id,
            build_rule_id,
            repo.namespace,
            repo.name,
            rule.image_tag,
            now,
            self.world.clock.epoch_ms(),
            0.0,
            builds.SUCCESS,
        )
        domain = self.source_domain(repo)
        project = f"{repo.source.namespace}/{repo.source.name}"
        clone_url = f"{domain}/{project}.git"
        ctx = {
            "clone_url": clone_url,
            "ref": rule.push_name,
            "image": f"{repo.full_name}:{rule.image_tag}",
            "registry": f"{inst.name}-registry-vpc.{inst.region}.cr.aliyuncs.com",
            "dockerfile": f"{rule.dockerfile_location.rstrip('/')}/{rule.dockerfile_name}",
            "platforms": ",".join(rule.platforms),
        }
        stages = builds.hanging(self.stages) if repo.full_name in self.hang_repos else self.stages
        builds.plan_build(record, stages, self.pending_seconds, ctx, self._failure(repo, domain, clone_url))
        self.records[record.build_record_id] = record
        return record

    def _failure(self, repo: Repository, domain: str, clone_url: str) -> tuple[str, list[str]] | None:
        """Decided once, when the build starts: the network path, the project, then fail_repos."""
        assert repo.source is not None
        ip, port = host_port(domain)
        ok, reason = self.world.ecs.reaches(self.build_service_account_id, ip, port)
        if not ok:
            return "GIT_CLONE", [
                f"fatal: unable to access '{clone_url}/': Failed to connect to {ip} port {port}: Connection timed out",
                f"error: the build network cannot reach {ip}:{port}: {reason}",
            ]
        refused = self._clone_refused(repo) if repo.source.code_repo_type == "GITLAB" else ""
        if refused:
            return "GIT_CLONE", [
                "remote: HTTP Basic: Access denied. If a password was provided for Git authentication, "
                "the password was incorrect or you're required to use a token instead of a password. "
                "If a token was provided, it was either incorrect, expired, or improperly scoped.",
                f"fatal: Authentication failed for '{clone_url}/'",
                f"error: GitLab refused the bound account: {refused}",
            ]
        if repo.source.code_repo_type == "GITLAB" and self._gitlab_knows_projects():
            if self.world.gitlab.project_by_path(f"{repo.source.namespace}/{repo.source.name}") is None:
                return "GIT_CLONE", [
                    "remote: The project you were looking for could not be found or you don't "
                    "have permission to view it.",
                    f"fatal: repository '{clone_url}/' not found",
                ]
        if repo.full_name in self.fail_repos:
            return "BUILD", []
        return None

    def _clone_refused(self, repo: Repository) -> str:
        """Why GitLab refuses the clone by the instance's bound account ("" when it does not, or cannot tell)."""
        gitlab = self.world.gitlab
        if not getattr(gitlab, "users", None):
            return ""
        account = self.code_source(self.instance(repo.instance_id), "GITLAB")
        username = account.username if account else ""
        user = gitlab.users.get(username.lower())
        if user is None:
            return f"no GitLab user {username or '(none bound)'}"
        if user.state != "active":
            return f"GitLab user {user.username} is {user.state}"
        usable = [
            t
            for t in gitlab.tokens.values()
            if t.user.lower() == user.username.lower()
            and not t.revoked
            and not gitlab.token_expired(t)
            and set(t.scopes) & _CLONE_SCOPES
        ]
        if usable:
            return ""
        return (
            f"GitLab user {user.username} has no token that is neither revoked nor expired with "
            f"{', '.join(sorted(_CLONE_SCOPES))}"
        )

    def record(self, instance_id: str, build_record_id: str, repo_id: str | None = None) -> BuildRecord:
        self.instance(instance_id)
        record = self.records.get(build_record_id)
        if record is None or record.instance_id != instance_id or (repo_id and record.repo_id != repo_id):
            raise BuildRecordNotExist(build_record_id)
        return record

    def status(self, record: BuildRecord) -> str:
        return record.status(self.world.clock.now(), self.pending_seconds)

    def cancel_build(self, instance_id: str, repo_id: str, build_record_id: str) -> BuildRecord:
        self.writable_instance(instance_id)
        self.repository(instance_id, repo_id)
        record = self.record(instance_id, build_record_id, repo_id)
        status = self.status(record)
        if status in builds.TERMINAL:
            raise BuildRecordStatusNotSupport(build_record_id, status)
        record.cancel(self.world.clock.now())
        return record

    def tag(self, instance_id: str, repo_id: str, tag: str) -> BuildRecord:
        """The latest build that pushed ``tag`` to the repository (SUCCESS by now)."""
        now = self.world.clock.now()
        pushed = [
            r
            for r in self.list_records(instance_id, repo_id)
            if r.image_tag == tag and r.status(now, self.pending_seconds) == builds.SUCCESS
        ]
        if not pushed:
            raise TagNotExist(tag)
        return max(pushed, key=lambda r: r.created_at + r.ends_at if r.end_offset(now) is not None else 0)

    def list_records(self, instance_id: str, repo_id: str) -> list[BuildRecord]:
        self.repository(instance_id, repo_id)
        found = [r for r in self.records.values() if r.instance_id == instance_id and r.repo_id == repo_id]
        return sorted(found, key=lambda r: r.created_at, reverse=True)
