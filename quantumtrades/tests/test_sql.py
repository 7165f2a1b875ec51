"""The engine's cursor on PostgreSQL: Django's `%s` placeholders, sent numbered."""

import pytest
from django.db import connection

from quantumtrades.core import sql


@pytest.fixture
def on_postgres(db):
    if connection.vendor != "postgresql":
        pytest.skip("the raw cursor is PostgreSQL's")


def test_placeholders_are_numbered_in_order_and_a_doubled_percent_is_one():
    assert sql._numbered("SELECT %s, '100%%', %s") == "SELECT $1, '100%', $2"


def test_any_other_placeholder_is_refused():
    with pytest.raises(ValueError, match="only %s placeholders"):
        sql._numbered("SELECT %(name)s")


@pytest.mark.postgres
def test_numbered_statements_run_with_a_doubled_percent_as_one(on_postgres):
    assert sql.answer(sql.send("SELECT %s::int - %s::int, '100%%'", [5, 2])) == [(3, "100%")]


@pytest.mark.postgres
def test_a_statement_of_more_parameters_than_psycopg_caches_binds_each_in_its_place(on_postgres):
    values = list(range(1, 121))
    statement = "SELECT " + ", ".join(["%s::int"] * len(values))
    assert sql.answer(sql.send(statement, values)) == [tuple(values)]
