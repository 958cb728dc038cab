"""The CLI on a PostgreSQL journal: the same commands, a URL for --journal, no password shown."""

from __future__ import annotations

import json
import re

import psycopg
import pytest
from click.testing import CliRunner

import eoflow
from eoflow import Engine, step, transaction, workflow
from eoflow.cli.main import cli
from eoflow.errors import JournalError, JournalLockedError, JournalUnavailableError


@step()
def p_add(x: int) -> int:
    return x + 1


@workflow()
def p_flow(x: int) -> int:
    return p_add(x)


@pytest.fixture
def secret_url(pg_url: str) -> str:
    """The test database's URL with a password (the local server trusts any)."""
    url = pg_url.replace("postgres:@", "postgres:s3cret@", 1)
    assert "s3cret" in url
    return url


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_every_reading_command_works_on_a_url(secret_url: str) -> None:
    with Engine(journal=secret_url) as engine:
        assert engine.run(p_flow, 1, workflow_id="p1") == 2
        assert "s3cret" not in engine.path
    code, out = invoke("status", "--json", "--journal", secret_url)
    assert code == 0, out
    report = json.loads(out)
    assert report["workflows"]["SUCCESS"] == 1 and report["by_name"] == {"p_flow": {"SUCCESS": 1}}
    outputs = [out]
    for args in (["workflows", "list"], ["workflows", "show", "p1"], ["quarantine", "list"],
                 ["journal", "info"], ["journal", "check"], ["journal", "export"],
                 ["journal", "prune", "--older-than", "1d"]):
        code, out = invoke(*args, "--journal", secret_url)
        assert code == 0, (args, out)
        outputs.append(out)
    assert "p1" in outputs[1] and "p_add" in outputs[2]
    assert json.loads(outputs[6].splitlines()[0])["steps"][0]["name"] == "p_add"
    code, out = invoke("journal", "backup", "copy.db", "--journal", secret_url)
    assert code == 1 and "pg_dump" in out
    outputs.append(out)
    assert not any("s3cret" in out for out in outputs)


def test_operator_changes_reach_a_running_engine(secret_url: str) -> None:
    with Engine(journal=secret_url) as engine:
        code, out = invoke("workflows", "fork", "missing", "--from-step", "1",
                           "--journal", secret_url)
        assert code == 1 and "missing" in out and "s3cret" not in out
        engine.run(p_flow, 2, workflow_id="p2")
        code, out = invoke("workflows", "fork", "p2", "--from-step", "2", "--new-id",
                           "p2-fork", "--journal", secret_url)
        assert code == 0, out
        handle = engine.retrieve("p2-fork")
        assert handle.result(timeout=10) == 3


def test_engines_share_a_postgres_journal_that_a_copy_holds_whole(secret_url: str) -> None:
    from eoflow.journal.opening import owned

    with Engine(journal=secret_url) as first, Engine(journal=secret_url) as second:
        assert first.run(p_flow, 3) == 4 and second.run(p_flow, 4) == 5
        assert first.journal.executor_id != second.journal.executor_id
        live = {e.executor_id: e.status for e in first.journal.list_executors()}
        assert live == {first.journal.executor_id: "ALIVE", second.journal.executor_id: "ALIVE"}
        code, out = invoke("status", "--json", "--journal", secret_url)
        shown = {e["executor_id"]: (e["state"], e["runs_owned"])
                 for e in json.loads(out)["executors"]}
        assert shown == {first.journal.executor_id: ("alive", 0),
                         second.journal.executor_id: ("alive", 0)}
        code, out = invoke("status", "--journal", secret_url)
        assert code == 0 and "Executors" in out and str(first.journal.executor_id) in out
        # A copy waits for every engine to stop; the error names one of them (its writer
        # session is named after its executor).
        engines = "|".join(re.escape(str(e.journal.executor_id)) for e in (first, second))
        with pytest.raises(JournalLockedError, match=f"eoflow [0-9a-f]+ ({engines}) "), \
                owned(secret_url):
            pass
    with owned(secret_url), pytest.raises(JournalError, match="is being copied by .*eoflow pid"):
        Engine(journal=secret_url)
    with Engine(journal=secret_url) as engine:  # released once the copy is done
        assert engine.run(p_flow, 3) == 4


def test_an_unreachable_server_is_one_clear_line(secret_url: str) -> None:
    url = secret_url.split("?")[0] + "?host=/nonexistent&connect_timeout=2"
    with pytest.raises(JournalUnavailableError, match="cannot connect .*check the URL") as info:
        Engine(journal=url)
    assert "s3cret" not in str(info.value)
    code, out = invoke("status", "--journal", url)
    assert code == 1 and len(out.strip().splitlines()) == 1 and "s3cret" not in out


@transaction()
def p_record(x: int) -> None:
    eoflow.db().execute("INSERT INTO p_orders VALUES (%s)", (x,))


@workflow()
def p_order(x: int) -> int:
    p_record(x)
    return x


def test_a_schema_in_the_url_keeps_eoflows_tables_apart(pg_url: str) -> None:
    admin = psycopg.connect(pg_url, autocommit=True)
    admin.execute("CREATE SCHEMA eoflow")
    admin.execute("CREATE TABLE public.p_orders (x INTEGER)")
    url = pg_url + "&options=-csearch_path%3Deoflow,public"
    with Engine(journal=url) as engine:
        assert engine.run(p_order, 7) == 7
    schemas = {row[0] for row in admin.execute(
        "SELECT schemaname FROM pg_tables WHERE tablename LIKE 'eoflow%'")}
    assert schemas == {"eoflow"}
    assert admin.execute("SELECT x FROM public.p_orders").fetchall() == [(7,)]
    code, out = invoke("status", "--json", "--journal", url)
    assert code == 0 and json.loads(out)["workflows"]["SUCCESS"] == 1
    code, out = invoke("status", "--journal", pg_url)  # without the schema: no journal there
    assert code == 1 and "holds no eoflow journal" in out
    admin.close()
