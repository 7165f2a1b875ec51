"""Multi-row statements for the matching engine's hot path.

The engine writes a handful of rows per command while it holds the book lock. Django's
bulk_create and bulk_update cost far more Python time compiling the statement than the
database spends running it, and that time is spent inside the lock. These helpers build
the same SQL directly: one INSERT for many rows, one UPDATE for many rows. Values are
adapted by each model field, exactly as the ORM would, and the SQL works on PostgreSQL
and SQLite (3.35+) alike.
"""

import contextlib
import datetime
import functools
import re
import select
import threading
import time
from collections.abc import Iterable, Sequence

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, models
from django.db.models import signals
from django.db.models.base import ModelState
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute
from psycopg import errors
from psycopg.adapt import PyFormat, Transformer
from psycopg.pq import ConnStatus, ExecStatus, TransactionStatus

# Field classes whose Python values PostgreSQL's driver (psycopg) takes as they are: for
# them Django's get_db_prep_save only checks and copies, which cost a tenth of the engine's
# time inside the book lock. SQLite needs Django's conversions (decimals become text).
_NATIVE_ON_POSTGRESQL = (
    models.BigAutoField,
    models.AutoField,
    models.IntegerField,
    models.DecimalField,
    models.CharField,
    models.BooleanField,
    models.DateTimeField,
    models.ForeignKey,
)
_statements: dict = {}


def _shape(kind, model, names, rows):
    """(SQL, one value preparer per column) of a statement, built once per shape and database."""
    db = connection.vendor
    key = (kind, model, tuple(names), rows, db)
    found = _statements.get(key)
    if found is None:
        found = _statements[key] = (_build(kind, model, names, rows, db), _preparers(model, names, db))
    return found


def _preparers(model, names, db):
    """None where the value goes to the driver as it is, else the field that prepares it."""
    fields = [model._meta.get_field(name) for name in names]
    return [None if db == "postgresql" and isinstance(field, _NATIVE_ON_POSTGRESQL) else field for field in fields]


def _build(kind, model, names, rows, db):
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    fields = [model._meta.get_field(name) for name in names]
    columns = ", ".join(quote(field.column) for field in fields)
    if kind == "insert":
        placeholder = "(" + ", ".join(["%s"] * len(fields)) + ")"
        return f"INSERT INTO {table} ({columns}) VALUES " + ", ".join([placeholder] * rows)
    pk = model._meta.pk
    aliases = ["k"] + [f"v{index}" for index in range(len(fields))]
    if db == "postgresql":
        # Parameters in VALUES carry no column type; cast so numeric stays numeric.
        casts = [pk.db_type(connection)] + [field.cast_db_type(connection) for field in fields]
        placeholder = "(" + ", ".join(f"%s::{cast}" for cast in casts) + ")"
    else:
        placeholder = "(" + ", ".join(["%s"] * len(aliases)) + ")"
    assignments = ", ".join(
        f"{quote(field.column)} = v.{alias}" for field, alias in zip(fields, aliases[1:], strict=True)
    )
    return (
        f"WITH v({', '.join(aliases)}) AS (VALUES {', '.join([placeholder] * rows)}) "
        f"UPDATE {table} SET {assignments} FROM v WHERE {table}.{quote(pk.column)} = v.k"
    )


def _prepared(preparers, row, db_connection):
    return [
        value if field is None else field.get_db_prep_save(value, db_connection)
        for field, value in zip(preparers, row, strict=True)
    ]


def values_prepared(model, names: Sequence[str], rows: Iterable[Sequence]) -> list:
    """The values of `rows` (each in the order of `names`), one flat list of parameters,
    prepared for the database as the ORM would prepare them (as they are, where PostgreSQL's
    driver takes them so)."""
    db_connection = connections[DEFAULT_DB_ALIAS]
    key = ("values", model, tuple(names), db_connection.vendor)
    preparers = _statements.get(key)
    if preparers is None:
        preparers = _statements[key] = _preparers(model, names, db_connection.vendor)
    return [value for row in rows for value in _prepared(preparers, row, db_connection)]


def _insert(model, names, rows) -> tuple[str, list] | None:
    """(SQL, parameters) of one INSERT of `rows`, or None for no rows."""
    if not rows:
        return None
    sql, preparers = _shape("insert", model, names, len(rows))
    db_connection = connections[DEFAULT_DB_ALIAS]
    return sql, [value for row in rows for value in _prepared(preparers, row, db_connection)]


def _update(model, names, rows) -> tuple[str, list] | None:
    """(SQL, parameters) of one UPDATE of `rows` (pk, values...), or None for no rows."""
    if not rows:
        return None
    sql, preparers = _shape("update", model, names, len(rows))
    db_connection = connections[DEFAULT_DB_ALIAS]
    params = []
    for pk_value, *values in rows:
        params.append(pk_value)
        params += _prepared(preparers, values, db_connection)
    return sql, params


def insert_rows(model, names: Sequence[str], rows: Iterable[Sequence], *, returning: str | None = None) -> list:
    """INSERT `rows` (values in the order of `names`); return the `returning` column per row, in order."""
    insert = _insert(model, names, list(rows))
    if insert is None:
        return []
    sql, params = insert
    with cursor() as statement:
        if returning is None:
            statement.execute(sql, params)
            return []
        statement.execute(f"{sql} RETURNING {connections[DEFAULT_DB_ALIAS].ops.quote_name(returning)}", params)
        # Both databases return the rows of a multi-row INSERT in the order of VALUES.
        return [row[0] for row in statement.fetchall()]


def update_rows(model, names: Sequence[str], rows: Iterable[Sequence]) -> None:
    """UPDATE many rows in one statement: each row is (pk, value for each of `names`)."""
    update = _update(model, names, list(rows))
    if update is not None:
        with cursor() as statement:
            statement.execute(*update)


def update_and_insert_rows(update: tuple, insert: tuple, *, returning: str | None = None):
    """`update_rows(*update)`, then `insert_rows(*insert)`, each a (model, names, rows).

    On PostgreSQL the two are one statement, the UPDATE a data-modifying CTE of the INSERT
    (both see the same snapshot, so neither may read what the other writes): every statement
    costs the engine about as much of the driver's Python as PostgreSQL spends running it
    (docs/BENCHMARKS.md, "Round trips under the book lock"). Two statements elsewhere.
    With `returning`, returns a function that reads that column of the inserted rows, in
    order: inside `pipeline()`, call it once the block has ended.
    """
    inserted = list(insert[2])
    first, second = _update(update[0], update[1], list(update[2])), _insert(insert[0], insert[1], inserted)
    if first is None or second is None or connection.vendor != "postgresql":
        if first is not None:
            with cursor() as statement:
                statement.execute(*first)
        if returning is None:
            if second is not None:
                with cursor() as statement:
                    statement.execute(*second)
            return None
        ids = insert_rows(insert[0], insert[1], inserted, returning=returning)
        return lambda: ids
    key = ("update+insert", first[0], second[0], returning)
    sql = _statements.get(key)
    if sql is None:
        tail = "" if returning is None else f" RETURNING {connection.ops.quote_name(returning)}"
        sql = _statements[key] = f"WITH updated AS ({first[0]}) {second[0]}{tail}"
    if returning is None:
        with cursor() as statement:
            statement.execute(sql, first[1] + second[1])
        return None
    statement = send(sql, first[1] + second[1])
    return lambda: [row[0] for row in answer(statement)]


_converters: dict = {}


def _row_reader(model):
    """Per model: its columns and the converters the ORM would apply (None where no column
    has one: PostgreSQL's driver answers each as the model holds it). Keyed by the model
    alone: a process speaks to one kind of database, and looking the connection up again
    for its vendor on every read was 1 % of an order's time."""
    found = _converters.get(model)
    if found is None:
        fields = model._meta.concrete_fields
        table = model._meta.db_table
        readers = []
        for field in fields:
            column = field.get_col(table)
            readers.append((column, connection.ops.get_db_converters(column) + field.get_db_converters(connection)))
        columns = ", ".join(f"{connection.ops.quote_name(table)}.{connection.ops.quote_name(f.column)}" for f in fields)
        converting = any(converters for _, converters in readers)
        found = _converters[model] = ([f.attname for f in fields], columns, readers if converting else None)
    return found


def select_models(model, where: str, params: Sequence = (), *, tail: str = "", later: bool = False):
    """Model instances for `SELECT <all columns> FROM <table> WHERE <where> <tail>`.

    `tail` carries ORDER BY, LIMIT and FOR UPDATE. Values go through the same converters
    as an ORM query (SQLite's floats become Decimals again), without compiling one.

    With `later=True` the statement is sent and a function returned that reads its rows:
    inside `pipeline()`, call it after the block, when the round trip that ended the block
    has brought every statement's answer at once.
    """
    names, columns, readers = _row_reader(model)
    sql = f"SELECT {columns} FROM {connection.ops.quote_name(model._meta.db_table)} WHERE {where} {tail}"
    statement = send(sql, params)

    def read() -> list:
        return models_of(model, answer(statement))

    return read if later else read()


def models_of(model, rows) -> list:
    """Model instances of rows that hold every column of `model` in its field order (a
    RETURNING, a CTE's rows), read as `select_models` reads rows."""
    names, _, readers = _row_reader(model)
    instance = _instance_maker(model)
    if readers is None:
        return [instance(row) for row in rows]
    db_connection = connections[DEFAULT_DB_ALIAS]
    found = []
    for row in rows:
        values = []
        for value, (column, converters) in zip(row, readers, strict=True):
            for converter in converters:
                value = converter(value, column, db_connection)
            values.append(value)
        found.append(instance(values))
    return found


_plain_models: dict = {}
_PLAIN_ATTRIBUTES = (DeferredAttribute, ForeignKeyDeferredAttribute)


def _instance_maker(model):
    """A function from a row of every column of `model` to the instance `from_db` makes.

    `Model.__init__` sets each field through `setattr` and sends `pre_init` and
    `post_init`; the engine reads 10-40 rows an order, and building them was 4 % of an
    order's CPU over HTTP (5.4 us an order row, against 1.6 us filled directly;
    docs/BENCHMARKS.md). When the model keeps Django's `__init__` and `from_db`, each
    field's attribute is Django's plain deferred one (it stores into the instance's
    `__dict__` when set) and no receiver listens to those signals now, the instance is
    built as `__init__` would leave it, its `__dict__` filled directly. Otherwise
    `from_db` builds it."""
    names = _row_reader(model)[0]
    plain = _plain_models.get(model)
    if plain is None:
        plain = _plain_models[model] = (
            model.__init__ is models.Model.__init__
            and model.from_db.__func__ is models.Model.from_db.__func__
            and all(type(model.__dict__.get(name)) in _PLAIN_ATTRIBUTES for name in names)
        )
    if not plain or signals.pre_init.has_listeners(model) or signals.post_init.has_listeners(model):
        return functools.partial(model.from_db, DEFAULT_DB_ALIAS, names)
    new = model.__new__

    def instance(row):
        made = new(model)
        state = ModelState()
        state.adding = False
        state.db = DEFAULT_DB_ALIAS
        values = made.__dict__
        values.update(zip(names, row, strict=True))
        values["_state"] = state
        return made

    return instance


def for_update() -> str:
    """The row-locking clause where the database has one. SQLite has none: its IMMEDIATE
    transactions (see settings) already let one writer in at a time."""
    return " FOR UPDATE" if connection.features.has_select_for_update else ""


def allocate_ids(wanted: dict, *, later: bool = False, beside: tuple[str, Sequence] | None = None):
    """Primary keys for rows about to be inserted, {model: count} -> {model: [ids]}.

    With `beside` (a SELECT and its parameters, answering at most one row), that row comes
    in the same statement on PostgreSQL, as `(ids, row)` (the row None if it had none):
    each statement costs the driver's Python about as much as the database spends on it.

    Knowing the ids up front lets dependent rows (a fill names its trade) go out in one
    pipeline instead of waiting for RETURNING. PostgreSQL draws them from each table's
    sequence in one statement. SQLite has no sequences, but the IMMEDIATE transaction
    holds its single write lock, so the next ids after MAX(id) are ours; call this once
    per table per transaction, before inserting into it. `later` as for `select_models`.
    """
    wanted = {model: count for model, count in wanted.items() if count}
    if beside is not None and (not wanted or connection.vendor != "postgresql"):
        ids, row = allocate_ids(wanted, later=True), send(*beside)
        read = lambda: (ids(), next(iter(answer(row)), None))  # noqa: E731
        return read if later else read()
    if not wanted:
        return dict if later else {}
    if connection.vendor != "postgresql":
        allocated = {}
        quote = connection.ops.quote_name
        with connection.cursor() as statement:
            for model, count in wanted.items():
                statement.execute(
                    f"SELECT COALESCE(MAX({quote(model._meta.pk.column)}), 0) FROM {quote(model._meta.db_table)}"
                )
                first = statement.fetchone()[0] + 1
                allocated[model] = list(range(first, first + count))
        return (lambda: allocated) if later else allocated
    # Literals, not parameters (a handful of shapes, each prepared once): a statement
    # without parameters keeps its one plan, where with them PostgreSQL planned it anew
    # at every execution.
    columns = ", ".join(
        f"(SELECT array_agg(nextval(pg_get_serial_sequence('{model._meta.db_table}', '{model._meta.pk.column}'))) "
        f"FROM generate_series(1, {int(count)}))"
        for model, count in wanted.items()
    )
    if beside is None:
        statement = send(f"SELECT {columns}")
    else:
        # The row beside, joined to the ids' one row: still one row when it has none.
        statement = send(
            f"SELECT {columns}, beside.* FROM (SELECT 1) AS ids LEFT JOIN ({beside[0]}) AS beside ON true", beside[1]
        )

    def read():
        [row] = answer(statement)
        ids = dict(zip(wanted, (list(ids) for ids in row[: len(wanted)]), strict=True))
        if beside is None:
            return ids
        rest = row[len(wanted) :]
        return ids, (None if all(value is None for value in rest) else rest)

    return read if later else read()


_TIMESTAMPTZ = psycopg.postgres.types["timestamptz"].oid


class _UtcTimestamps(psycopg.adapt.Loader):
    """timestamptz values in UTC, parsed by psycopg's C loader (`timestamps_loaded_in_c`)."""

    # What Django's loader says of itself: Django compares it with the connection's time
    # zone on every cursor, and registers a loader of its own on the cursor if they differ.
    timezone = datetime.UTC
    _c_loader = psycopg.adapters.get_loader(_TIMESTAMPTZ, psycopg.pq.Format.TEXT)

    def __init__(self, oid, context=None):
        super().__init__(oid, context)
        # The C loader's own method: psycopg calls it for each value, with no Python between.
        self.load = self._c_loader(oid, context).load

    def load(self, data):  # replaced by each instance's, above
        raise NotImplementedError


def timestamps_loaded_in_c(sender, connection, **kwargs):
    """On a new PostgreSQL connection (`connection_created`), read timestamptz columns with
    psycopg's C loader rather than Django's.

    Django registers a Python subclass of psycopg's pure-Python loader, which parses each
    value in Python and then sets Django's time zone on it: 114 µs against 26 µs for a read
    of twenty timestamps (docs/BENCHMARKS.md, "Order entry near the database's ceiling: the
    driver's share"), and every order and balance row the engine reads carries several.
    With USE_TZ and the session in UTC, which Django sets on every connection for
    TIME_ZONE = "UTC", psycopg's loader answers the very same values, `datetime.UTC`
    included; any other setting keeps Django's loader.
    """
    if connection.vendor != "postgresql" or not settings.USE_TZ or connection.timezone_name != "UTC":
        return
    adapters = connection.connection.adapters
    # With the pool, the signal comes at every request's checkout: register once per
    # psycopg connection.
    if adapters.get_loader(_TIMESTAMPTZ, psycopg.pq.Format.TEXT) is _UtcTimestamps:
        return
    if connection.connection.info.parameter_status("TimeZone") == "UTC":
        adapters.register_loader(_TIMESTAMPTZ, _UtcTimestamps)


_PLACEHOLDER = re.compile(r"%(.)", re.DOTALL)


@functools.lru_cache(maxsize=4096)
def _numbered(sql: str) -> str:
    """`sql` with its `%s` placeholders numbered as PostgreSQL's own, `%%` a plain `%`."""
    count = 0

    def number(found):
        nonlocal count
        if found[1] == "%":
            return "%"
        if found[1] != "s":
            raise ValueError(f"only %s placeholders, not %{found[1]}: {sql}")
        count += 1
        return f"${count}"

    return _PLACEHOLDER.sub(number, sql)


class _Statement:
    """One statement for the engine's hot path on PostgreSQL: bound on the server, prepared
    once per connection, sent on libpq's pipeline through `psycopg.pq` (`_Sender`).

    Django's PostgreSQL cursors interpolate parameters into the SQL text in Python (client-
    side binding) and never prepare: for the engine's statements that cost about 60 µs of
    Python per statement more than a server-bound one (docs/BENCHMARKS.md, "Matching
    engine"), and PostgreSQL, on the same two cores, parsed and planned each one anew.
    psycopg's own cursors bind on the server and prepare, but after every statement in a
    pipeline they poll the socket and send, and they set up a reader per answer: about 19
    µs a statement and 150 µs a transaction of the driver's Python, against 4 and 60 here
    (`bench/driver.py`; docs/BENCHMARKS.md, "What sits beside the engine"). Errors still
    arrive as Django's (IntegrityError, OperationalError) and statements are still recorded
    where Django records them (tests, DEBUG).

    The statements keep Django's `%s` placeholders and go out numbered as PostgreSQL's own
    (`$1`, `$2`, ...): psycopg caches its own translation only for statements of at most
    50 parameters, and translated the engine's longer ones (a trade's ledger entries) anew
    each time, 110 µs for 80 parameters against 11 µs for the raw statement
    (docs/BENCHMARKS.md, "Collector pauses").
    """

    def __init__(self, db_connection):
        self.db = db_connection
        self.db.ensure_connection()
        self.sender = _sender(self.db.connection)
        self.result = None
        self.waiting = False  # sent, and its answer not yet come (inside a pipeline)

    def execute(self, sql, params=(), *, prepare=True):
        started = time.monotonic()
        with self.db.wrap_database_errors:
            self.sender.send(self, _numbered(sql), params, prepare)
        if self.db.queries_logged:
            text = psycopg.ClientCursor(self.db.connection).mogrify(sql, params)
            self.db.queries_log.append({"sql": text, "time": f"{time.monotonic() - started:.3f}"})

    def fetchall(self) -> list:
        with self.db.wrap_database_errors:
            if self.waiting:
                self.sender.sync()  # read inside a pipeline: its statements so far answer now
            return self.sender.rows(self.result)

    def fetchone(self):
        rows = self.fetchall()
        return rows[0] if rows else None

    def close(self):
        self.result = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Sender:
    """A connection's side of `_Statement`: libpq's pipeline, driven through `psycopg.pq`.

    Statements are queued on the connection and sent together when the pipeline syncs: at
    the end of `pipeline()`, when a statement's answer is read inside it, or at once for a
    statement sent outside one. Each answer is handed to its statement. The first error of
    a sync is raised once every answer of it has been read, so the connection leaves the
    pipeline clean and Django's rollback finds it as psycopg would have left it.

    What psycopg's cursor did for the transaction, this does too: it opens the transaction
    that Django's `atomic` asked for (psycopg sends BEGIN before the first statement after
    autocommit was turned off; here BEGIN leads the first pipeline). Prepared statements
    are named per connection and parameter types. A rollback does not drop them in
    PostgreSQL, and psycopg prepares nothing else on these connections (Django's cursors
    bind on the client), so it never sends the DEALLOCATE ALL that would.
    """

    def __init__(self, pg_connection):
        self.connection = pg_connection
        self.pgconn = pg_connection.pgconn
        self.transformer = Transformer(pg_connection)
        self.encoding = pg_connection.info.encoding
        self.names: dict = {}  # (numbered text, parameter types) -> prepared statement's name
        self.prepared = 0  # names drawn: each is new, whatever was forgotten since
        # poll, not select: a server process with a thousand sockets has descriptors past
        # select's limit (1024).
        self.poller = select.poll()
        self.poller.register(self.pgconn.socket, select.POLLIN)
        self.depth = 0  # open `pipeline()` blocks
        self.pending: list = []  # per result expected at the next sync: its statement, or a name being prepared

    def enter(self) -> None:
        if self.depth == 0:
            pgconn = self.pgconn
            pgconn.enter_pipeline_mode()
            if not self.connection.autocommit and pgconn.transaction_status == TransactionStatus.IDLE:
                # psycopg's own start of a transaction (an isolation level, if one is set).
                pgconn.send_query_params(self.connection._get_tx_start_command(), None)
                self.pending.append(None)
        self.depth += 1

    def leave(self, *, failed: bool = False) -> None:
        """End a block. `failed`: an exception is on its way out of it, and is the news: the
        block's answers are read and dropped, and nothing of the database's is raised."""
        self.depth -= 1
        if self.depth:
            return
        try:
            if self.pending:
                self.sync(raising=not failed)
        except psycopg.Error:
            if not failed:
                raise
        finally:
            if self.pgconn.status == ConnStatus.OK:
                self.pgconn.exit_pipeline_mode()

    def send(self, statement: _Statement, numbered: str, params, prepare: bool) -> None:
        self.enter()
        try:
            pgconn, transformer = self.pgconn, self.transformer
            if params:
                values = transformer.dump_sequence(params, [PyFormat.AUTO] * len(params))
                types, formats = tuple(transformer.types), list(transformer.formats)
            else:
                values, types, formats = None, (), None
            if prepare:
                key = (numbered, types)
                name = self.names.get(key)
                if name is None:
                    self.prepared += 1
                    name = self.names[key] = f"qt_{self.prepared}".encode()
                    pgconn.send_prepare(name, numbered.encode(), param_types=types or None)
                    self.pending.append(key)
                pgconn.send_query_prepared(name, values, param_formats=formats)
            else:
                pgconn.send_query_params(numbered.encode(), values, param_types=types or None, param_formats=formats)
            self.pending.append(statement)
            statement.waiting, statement.result = True, None
        except BaseException:
            self.leave(failed=True)
            raise
        self.leave()

    def sync(self, *, raising: bool = True) -> None:
        """Send what is queued with a sync, and hand each answer to its statement."""
        pgconn = self.pgconn
        pending, self.pending = self.pending, []
        pgconn.pipeline_sync()
        while pgconn.flush():
            # The server may be sending while it waits to read more: take what it sent.
            if any(events & select.POLLIN for _, events in self._wait(select.POLLIN | select.POLLOUT)):
                pgconn.consume_input()
        first_error = None
        for sent in pending:
            result = self._next_result()
            if result.status == ExecStatus.FATAL_ERROR:
                if first_error is None:
                    first_error = errors.error_from_result(result, self.encoding)
                if isinstance(sent, tuple):
                    self.names.pop(sent, None)  # never prepared: the next use prepares it again
            elif isinstance(sent, _Statement):
                sent.result = result
            if isinstance(sent, _Statement):
                sent.waiting = False
            if self._next_result() is not None:
                raise errors.InternalError("a statement in the engine's pipeline answered twice")
        if self._next_result().status != ExecStatus.PIPELINE_SYNC:
            raise errors.InternalError("the engine's pipeline ended without its sync")
        if first_error is not None:
            if first_error.sqlstate == "26000":  # invalid_sql_statement_name: names lost, prepare anew
                self.names.clear()
            if raising:
                raise first_error

    def _next_result(self):
        pgconn = self.pgconn
        while True:
            pgconn.consume_input()
            if not pgconn.is_busy():
                return pgconn.get_result()
            self._wait(select.POLLIN)

    def _wait(self, events: int) -> list:
        self.poller.modify(self.pgconn.socket, events)
        return self.poller.poll()

    def rows(self, result) -> list:
        if result is None or result.status != ExecStatus.TUPLES_OK:
            return []
        self.transformer.set_pgresult(result)
        return self.transformer.load_rows(0, result.ntuples, tuple)


def _sender(pg_connection) -> _Sender:
    sender = getattr(pg_connection, "_qt_sender", None)
    if sender is None or sender.pgconn is not pg_connection.pgconn:
        sender = pg_connection._qt_sender = _Sender(pg_connection)
    return sender


def cursor():
    """A cursor for the engine's hot path: `_Statement` on PostgreSQL, Django's elsewhere."""
    db_connection = connections[DEFAULT_DB_ALIAS]
    if db_connection.vendor == "postgresql":
        return _Statement(db_connection)
    return db_connection.cursor()


def send(sql: str, params: Sequence = ()):
    """Execute a statement on the engine's cursor (`cursor`) and return the cursor unread.
    Inside `pipeline()` its answer comes with the round trip that ends the block; read it
    then with `answer`."""
    statement = cursor()
    try:
        statement.execute(sql, params)
    except BaseException:
        statement.close()
        raise
    return statement


def answer(statement) -> list:
    """The rows of a statement from `send`; the cursor is closed."""
    try:
        return statement.fetchall()
    finally:
        statement.close()


def savepoint() -> str | None:
    """Django's `connection.savepoint()` (same name, same bookkeeping), its SAVEPOINT sent
    on the engine's cursor on PostgreSQL: every command of a group opens one, and through
    Django's wrapped cursor that was 5 % of the engine's Python at eight threads
    (docs/BENCHMARKS.md, "Indexes that only cost"). Inside `pipeline()` it waits for the
    pipeline's round trip. A utility statement, it is not prepared."""
    db_connection = connections[DEFAULT_DB_ALIAS]
    if db_connection.vendor != "postgresql" or not db_connection.in_atomic_block:
        return db_connection.savepoint()
    db_connection.savepoint_state += 1
    sid = f"s{threading.get_ident()}_x{db_connection.savepoint_state}"
    with cursor() as statement:
        statement.execute(db_connection.ops.savepoint_create_sql(sid), prepare=False)
    return sid


def pipeline():
    """Send the statements inside without waiting for each answer (PostgreSQL's pipeline
    mode; results come when something is fetched or the block ends). On SQLite, which has
    no round trips to save, statements simply run in turn."""
    db_connection = connections[DEFAULT_DB_ALIAS]
    if db_connection.vendor == "postgresql":
        db_connection.ensure_connection()
        return _pipelined(db_connection, _sender(db_connection.connection))
    return contextlib.nullcontext()


@contextlib.contextmanager
def _pipelined(db_connection, sender: _Sender):
    with db_connection.wrap_database_errors:
        sender.enter()
        try:
            yield
        except BaseException:
            sender.leave(failed=True)
            raise
        sender.leave()
