"""The engine's cursor on PostgreSQL: Django's `%s` placeholders, sent numbered."""

import psycopg
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


@pytest.mark.postgres
def test_timestamps_are_read_by_psycopg_s_c_loader_as_django_s_would_read_them(on_postgres):
    from datetime import UTC, datetime

    import psycopg
    from django.db.backends.postgresql.psycopg_any import get_adapters_template

    oid, text = psycopg.postgres.types["timestamptz"].oid, psycopg.pq.Format.TEXT
    connection.ensure_connection()
    assert connection.connection.adapters.get_loader(oid, text) is sql._UtcTimestamps
    moments = [
        datetime(2026, 12, 6, 17, 30, 1, 123456, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2024, 2, 29, 0, 0, tzinfo=UTC),
    ]
    statement = "SELECT " + ", ".join(["%s::timestamptz"] * len(moments))
    [ours] = sql.answer(sql.send(statement, moments))
    # The same values through Django's own loader, on a connection of Django's making.
    params = connection.get_connection_params()
    with psycopg.connect(**{**params, "context": get_adapters_template(True, UTC)}) as django_s:
        django_s.execute("SET TIME ZONE 'UTC'")
        djangos = django_s.execute(statement, moments).fetchone()

    assert list(ours) == list(djangos) == moments
    assert {value.tzinfo for value in ours} == {value.tzinfo for value in djangos} == {UTC}


@pytest.mark.postgres
def test_answers_in_a_pipeline_are_each_their_own_and_one_read_inside_comes_at_once(on_postgres):
    with sql.pipeline():
        with sql.cursor() as write:  # closed unread, as a write is
            write.execute("SELECT %s::int + 0", [3])
        first = sql.send("SELECT %s::int + 0", [4])
        second = sql.send("SELECT %s::int + 0", [5])
        assert sql.answer(first) == [(4,)]  # read inside the block: what was sent answers now
        third = sql.send("SELECT %s::int + 0", [6])
    assert (sql.answer(second), sql.answer(third)) == ([(5,)], [(6,)])
    assert connection.connection.pgconn.pipeline_status == psycopg.pq.PipelineStatus.OFF


@pytest.mark.postgres
def test_a_statement_larger_than_the_socket_takes_goes_out_whole(on_postgres):
    # Far larger than a socket buffer: libpq may send it in parts (`_Sender.sync`).
    text = "x" * 4_000_000
    with sql.pipeline():
        statements = [sql.send("SELECT length(%s::text) + %s::int", [text, n]) for n in range(3)]
    assert [sql.answer(statement) for statement in statements] == [[(4_000_000 + n,)] for n in range(3)]


@pytest.mark.postgres
def test_a_statement_that_fails_leaves_the_connection_usable_and_its_text_runs_again(on_postgres):
    from django.db import DatabaseError, transaction

    with pytest.raises(DatabaseError), transaction.atomic():
        sql.send("SELECT 1 / %s::int", [0])
    assert sql.answer(sql.send("SELECT 1 / %s::int", [1])) == [(1,)]


@pytest.mark.postgres
def test_an_error_in_a_pipeline_comes_at_its_end_and_what_follows_it_is_not_run(on_postgres):
    from django.contrib.auth.models import Group
    from django.db import IntegrityError, transaction

    insert = f"INSERT INTO {Group._meta.db_table} (name) VALUES (%s)"
    with pytest.raises(IntegrityError), transaction.atomic(), sql.pipeline():
        sql.send(insert, ["first"])
        sql.send(insert, ["first"])  # the name is unique
        sql.send(insert, ["after"])
    assert not Group.objects.filter(name__in=["first", "after"]).exists()
    # The connection is out of the pipeline, and the prepared statements outlived the rollback.
    with transaction.atomic():
        sql.send(insert, ["again"])
    assert Group.objects.filter(name="again").exists()


@pytest.mark.postgres
def test_statements_sent_in_an_atomic_block_are_its_transaction(on_postgres):
    from django.contrib.auth.models import Group
    from django.db import transaction

    insert = f"INSERT INTO {Group._meta.db_table} (name) VALUES (%s)"

    class Undone(Exception):
        pass

    with pytest.raises(Undone), transaction.atomic():
        sql.send(insert, ["undone"])
        with sql.pipeline():
            sql.send(insert, ["undone too"])
        raise Undone
    assert not Group.objects.filter(name__startswith="undone").exists()


def _fields(instance) -> dict:
    return {field.attname: getattr(instance, field.attname) for field in type(instance)._meta.concrete_fields}


# Django's own models serve here: the core imports none of the project's apps.
@pytest.mark.django_db
def test_rows_read_by_the_engine_s_reader_are_the_instances_the_orm_reads():
    from django.contrib.auth.models import Group, Permission
    from django.contrib.contenttypes.models import ContentType

    group = Group.objects.create(name="readers")
    groups = Group.objects.count()
    [read] = sql.select_models(Group, "id = %s", [group.pk])
    assert _fields(read) == _fields(Group.objects.get(pk=group.pk))
    assert (read._state.adding, read._state.db) == (False, "default")
    # Saved, it updates its row: an instance of the database, not a new one.
    read.name = "writers"
    read.save()
    assert Group.objects.get(pk=group.pk).name == "writers"
    assert Group.objects.count() == groups
    # A foreign key's object loads from its id, as for the ORM's instance.
    permission = Permission.objects.select_related("content_type").order_by("pk").first()
    [read_permission] = sql.select_models(Permission, "id = %s", [permission.pk])
    assert _fields(read_permission) == _fields(permission)
    assert read_permission.content_type == permission.content_type
    other = ContentType.objects.exclude(pk=permission.content_type_id).first()
    read_permission.content_type_id = other.pk  # a changed id forgets the object it loaded
    assert read_permission.content_type == other


@pytest.mark.django_db
def test_a_model_whose_instances_a_receiver_watches_is_read_through_its_init():
    from django.contrib.auth.models import Group
    from django.db.models.signals import post_init

    group = Group.objects.create(name="watched")
    seen = []

    def watch(sender, instance, **kwargs):
        seen.append(instance.name)

    sql.select_models(Group, "id = %s", [group.pk])
    assert seen == []
    post_init.connect(watch, sender=Group)
    try:
        [read] = sql.select_models(Group, "id = %s", [group.pk])
    finally:
        post_init.disconnect(watch, sender=Group)
    assert seen == ["watched"]
    assert (read.name, read._state.adding) == ("watched", False)
