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
sender of its own. The libpq side is that sender itself (`quantumtrades/core/sql.py`,
`_Sender`, on a plain psycopg connection): BEGIN in the pipeline, the parameters dumped
with psycopg's transformer, each statement sent by name, one sync, each answer's rows
loaded with the transformer. It leaves out what the engine's statements add around it
(Django's connection, errors raised as Django's): the figure is the driver's share alone.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from quantumtrades.core.sql import _sender


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


class _Read:
    """What the sender hands an answer to (the engine's `_Statement`, without Django)."""

    waiting = False
    result = None


def through_sender(connection, texts, transactions: int) -> float:
    sender = _sender(connection)  # one per connection, as the engine keeps it
    started = time.thread_time()
    for _ in range(transactions):
        sender.enter()  # BEGIN leads the pipeline, as in a command
        sent = []
        for sql, params in texts:
            read = _Read()
            sender.send(read, sql, params, True)
            sent.append(read)
        sender.leave()
        for read in sent:
            sender.rows(read.result)
        connection.commit()
    return (time.thread_time() - started) / transactions


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--statements", type=int, default=12)
    parser.add_argument("--transactions", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    texts = statements(args.statements)
    with (
        psycopg.connect(args.pg, prepare_threshold=0) as cursors,
        psycopg.connect(args.pg) as libpq,
    ):
        for index in range(args.rounds):
            row = {
                "round": index + 1,
                "statements": args.statements,
                "cursors_us": round(through_cursors(cursors, texts, args.transactions) * 1e6, 1),
                "libpq_us": round(through_sender(libpq, texts, args.transactions) * 1e6, 1),
            }
            row["ratio"] = round(row["libpq_us"] / row["cursors_us"], 3)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
