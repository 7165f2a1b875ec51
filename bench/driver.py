"""The driver's CPU for one pipeline of prepared statements: psycopg's cursors, as the engine
sends them (`quantumtrades/core/sql.py`), against libpq's pipeline driven through `psycopg.pq`.

    .venv/bin/python bench/driver.py [--pg postgresql://postgres@127.0.0.1:5432/postgres]
        [--statements 12] [--transactions 2000] [--rounds 3]

Each transaction is BEGIN, `--statements` prepared one-row SELECTs of two parameters and
four columns, sent in one pipeline and read after it, then COMMIT: about the shape of an
order's statements in the engine. Both sides run the same statements on connections of
their own, in turn, one thread each; the figure is the thread's CPU per transaction, which
the database's time does not count. Nothing is written; no database is made.

The cursor side keeps one idle cursor per statement text, as the engine did until it got a
sender of its own. The libpq side is what that sender (`quantumtrades/core/sql.py`,
`_Sender`) does: dump the parameters with psycopg's transformer, send each statement by
name, sync once, read each result and load its rows with the transformer. It leaves out
what the sender also keeps (Django's transaction, errors raised as Django's): the figure is
the driver's share alone.
"""

import argparse
import json
import select
import time

import psycopg
from psycopg import pq
from psycopg.adapt import PyFormat, Transformer


def statements(count: int) -> list[tuple[str, list]]:
    return [
        (f"SELECT $1::bigint + {index}, $2::numeric, now(), 'x{index}'::text", [index, 1.5]) for index in range(count)
    ]


def through_cursors(connection, texts, transactions: int) -> float:
    idle = {}
    started = time.thread_time()
    for _ in range(transactions):
        sent = []
        with connection.pipeline():
            for sql, params in texts:
                cursor = idle.pop(sql, None) or psycopg.RawCursor(connection)
                cursor.execute(sql, params, prepare=True)
                sent.append((sql, cursor))
        for sql, cursor in sent:
            cursor.fetchall()
            idle[sql] = cursor
        connection.commit()
    return (time.thread_time() - started) / transactions


def _next_result(pgconn):
    while True:
        pgconn.consume_input()
        if not pgconn.is_busy():
            return pgconn.get_result()
        select.select([pgconn.socket], [], [])


def through_libpq(connection, texts, transactions: int, names: dict) -> float:
    pgconn = connection.pgconn
    transformer = Transformer(connection)
    formats = [PyFormat.AUTO] * len(texts[0][1])
    started = time.thread_time()
    for _ in range(transactions):
        pgconn.enter_pipeline_mode()
        pgconn.send_query_params(b"BEGIN", None)
        reads = [False]  # per result: whether its rows are read
        for sql, params in texts:
            dumped = transformer.dump_sequence(params, formats)
            name = names.get(sql)
            if name is None:
                name = names[sql] = f"bench_{len(names)}".encode()
                pgconn.send_prepare(name, sql.encode(), param_types=transformer.types)
                reads.append(False)
            pgconn.send_query_prepared(name, dumped, param_formats=transformer.formats)
            reads.append(True)
        pgconn.pipeline_sync()
        while pgconn.flush():
            pass
        for read in reads:
            result = _next_result(pgconn)
            if result.status not in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
                raise RuntimeError(result.error_message.decode())
            if read:
                transformer.set_pgresult(result)
                transformer.load_rows(0, result.ntuples, tuple)
            if _next_result(pgconn) is not None:
                raise RuntimeError("a statement answered more than one result")
        if _next_result(pgconn).status != pq.ExecStatus.PIPELINE_SYNC:
            raise RuntimeError("no sync at the pipeline's end")
        pgconn.exit_pipeline_mode()
        if pgconn.exec_(b"COMMIT").status != pq.ExecStatus.COMMAND_OK:
            raise RuntimeError(pgconn.error_message.decode())
    return (time.thread_time() - started) / transactions


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--statements", type=int, default=12)
    parser.add_argument("--transactions", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    texts = statements(args.statements)
    names = {}
    with (
        psycopg.connect(args.pg, prepare_threshold=0) as cursors,
        psycopg.connect(args.pg, autocommit=True) as libpq,
    ):
        for index in range(args.rounds):
            row = {
                "round": index + 1,
                "statements": args.statements,
                "cursors_us": round(through_cursors(cursors, texts, args.transactions) * 1e6, 1),
                "libpq_us": round(through_libpq(libpq, texts, args.transactions, names) * 1e6, 1),
            }
            row["ratio"] = round(row["libpq_us"] / row["cursors_us"], 3)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
