"""``acrvpc demo``'s own Prefect server and packaged files (acrvpc/cli/demo_server.py, issue 18)."""

from __future__ import annotations

import json
import sqlite3
import urllib.request
from pathlib import Path

from acrvpc.cli import demo_server
from acrvpc.cli.app import DEFAULT_SPEC

ROOT = Path(__file__).resolve().parents[2]


def test_the_packaged_demo_spec_is_the_example():
    assert DEFAULT_SPEC.read_text() == (ROOT / "examples" / "sandbox.yaml").read_text()


def test_the_packaged_schema_is_for_the_installed_prefect():
    """Fails after a Prefect upgrade until `python -m acrvpc.cli.demo_server --write` rebuilds it (the demo
    falls back to Prefect's migrations meanwhile)."""
    assert demo_server.template_key() == demo_server.installed_key()


def schema_facts(database: Path) -> dict:
    """Tables with their columns, foreign keys and indexes, order-free (Prefect's batch migrations rebuild
    tables with their constraints in a varying order), and the rows of alembic_version."""
    facts: dict = {}
    with sqlite3.connect(database) as db:
        for (table,) in db.execute("select name from sqlite_master where type = 'table' order by name"):
            facts[table] = {
                "columns": sorted(db.execute(f"pragma table_info('{table}')").fetchall()),
                "foreign_keys": sorted(r[2:] for r in db.execute(f"pragma foreign_key_list('{table}')")),
                "indexes": sorted(
                    (r[1], r[2], tuple(c[2] for c in db.execute(f"pragma index_info('{r[1]}')")))
                    for r in db.execute(f"pragma index_list('{table}')")
                ),
            }
        facts["alembic_version rows"] = db.execute("select * from alembic_version").fetchall()
    db.close()
    return facts


def test_the_packaged_schema_is_what_prefects_migrations_create(tmp_path):
    migrated = demo_server.migrate_database(tmp_path / "migrated")
    seeded = tmp_path / "seeded" / "prefect.db"
    demo_server.seed_database(seeded)
    assert schema_facts(seeded) == schema_facts(migrated)


def test_a_new_database_gets_the_schema_and_prefects_migration_head(tmp_path):
    database = tmp_path / "home" / "prefect.db"
    assert demo_server.seed_database(database) == "new database from the packaged schema"
    with sqlite3.connect(database) as db:
        head = db.execute("select version_num from alembic_version").fetchall()
        tables = {r[0] for r in db.execute("select name from sqlite_master where type = 'table'")}
    db.close()
    assert head == [(demo_server.installed_key()[1],)]
    assert {"flow_run", "task_run", "deployment", "block_document"} <= tables
    assert demo_server.seed_database(database) == "existing database"
    assert not list(database.parent.glob(".*tmp"))


def test_a_template_for_another_prefect_is_not_used(tmp_path, monkeypatch):
    other = tmp_path / "schema.sql"
    other.write_text("-- prefect 0.0.1 migration head 000000000000\nCREATE TABLE x (a);\n")
    monkeypatch.setattr(demo_server, "TEMPLATE", other)
    database = tmp_path / "prefect.db"
    said = demo_server.seed_database(database)
    assert "runs its migrations" in said and "0.0.1" in said
    assert not database.exists()


def test_a_database_named_by_any_settings_source_is_left_to_prefect(tmp_path, monkeypatch):
    for key in [k for k in __import__("os").environ if k.startswith("PREFECT_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(
        demo_server.sys, "modules", {k: v for k, v in demo_server.sys.modules.items() if not k.startswith("prefect")}
    )
    assert demo_server.default_database() == tmp_path / "home" / "prefect.db"
    (tmp_path / "prefect.toml").write_text('[server.database]\nconnection_url = "postgresql+asyncpg://x/y"\n')
    assert demo_server.default_database() is None
    (tmp_path / "prefect.toml").unlink()
    monkeypatch.setenv("PREFECT_SERVER_DATABASE_CONNECTION_URL", "sqlite+aiosqlite:///elsewhere.db")
    assert demo_server.default_database() is None


def test_a_pyproject_counts_only_for_its_tool_prefect_table(tmp_path, monkeypatch):
    """`make demo` runs in the repository, whose pyproject.toml says "database" in a comment: Prefect reads only
    [tool.prefect] there, so the demo still seeds its database and starts its server (it did not: issue 18)."""
    for key in [k for k in __import__("os").environ if k.startswith("PREFECT_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(
        demo_server.sys, "modules", {k: v for k, v in demo_server.sys.modules.items() if not k.startswith("prefect")}
    )
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "x"\ndependencies = ["asyncpg"]  # reads the Prefect database\n'
        '[tool.prefect]\nlogging.level = "INFO"\n'
    )
    assert demo_server.default_database() == tmp_path / "home" / "prefect.db"
    assert (ROOT / "pyproject.toml").exists()
    monkeypatch.chdir(ROOT)
    assert demo_server.default_database() == tmp_path / "home" / "prefect.db"  # the repository's, for make demo
    monkeypatch.chdir(tmp_path)
    pyproject.write_text('[tool.prefect.server.database]\nconnection_url = "postgresql+asyncpg://x/y"\n')
    assert demo_server.default_database() is None
    pyproject.write_text('[tool.prefect]\nhome = "/elsewhere"\n')
    assert demo_server.default_database() is None
    pyproject.write_text("[tool.prefect\nbroken")
    assert demo_server.default_database() is None


def test_the_demo_server_answers_without_registering_block_types(tmp_path, monkeypatch):
    """Registering every installed collection's block types was 1.4 of the server's 4 CPU s before it answered on
    a new PREFECT_HOME; the demo's run loads no block. No memo is written, so a later `prefect server start` on
    this home registers them."""
    for key in [k for k in __import__("os").environ if k.startswith("PREFECT_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    database = tmp_path / "prefect.db"
    demo_server.seed_database(database)
    server = demo_server.DemoServer()
    try:
        server.wait_ready(timeout=180)
        with urllib.request.urlopen(
            urllib.request.Request(
                f"{server.url}/block_types/filter", data=b"{}", headers={"Content-Type": "application/json"}
            ),
            timeout=30,
        ) as answer:
            assert json.loads(answer.read()) == []
    finally:
        server.stop()
    assert server.process.returncode is not None
    assert not (tmp_path / "memo_store.toml").exists()
