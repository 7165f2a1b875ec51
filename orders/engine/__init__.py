"""The matching engine. Its commands, the doors every caller uses, are in
`orders/services/` (`order_place`, `order_cancel`, `order_amend`, `orders_cancel_all`,
`oco_place`, `order_list_cancel`);
this package is how they work. Read this map, then each module in the order below.

Every command runs in one database transaction and follows the same steps:

1. Validate what needs no lock (`rules.order_validate`): enums, tick, lot, minimum notional.
2. Lock the market row (`SELECT ... FOR UPDATE`): the book lock. Commands on one
   market run one at a time from here; orders of the market change only under it.
   With the lock come the trader's standing (kill switch, active orders) and the last
   trade price; the controls that need them run here (`Command.trader_check`, the
   price band `Command.band`, docs/API.md "Market integrity").
3. Read the resting orders the command may trade with and plan the trades in memory.
4. Lock every balance the plan touches, in one statement, ascending (user, asset).
   (A new order sends steps 2 to 4 in one round trip: the lock, the first batch of
   resting orders and the balances of their makers, `Command.begin`.)
5. Check funds, write orders, trades, fills, ledger postings, book levels and candles;
   bump the market's book sequence by exactly one. The look for the pending stops the
   trades crossed rides in that pipeline, and with it the moves of the trailing stops
   those trades took further (`stops.crossed_and_moved`).
6. Trigger the pending stop orders those trades reached, earliest accepted first: each
   is matched like a new order (steps 3 to 5, the balances of makers it meets locked
   then), and its trades may reach more stops, up to MAX_TRIGGERS_PER_COMMAND in all.
7. After commit, publish what happened (`quantumtrades.core.events`).

Lock order everywhere: (1) one market row, (2) balance rows, ascending (user, asset),
the fee account's last. Never the other way. Every `FOR UPDATE` is in `command`.

The modules, each one part of a command:

- `rules`: pure, no database. What an order must satisfy before it meets the book
  (`order_validate`), what it holds (`hold_for`, `stop_hold_for`) and what it pays
  (`fee_for`), and the refusals' words. Its docstring states the money rules. A check
  that needs no lock is a rule, and goes here.
- `caches`: what the engine remembers between commands (markets by symbol, the fee
  account's id), and how to forget it.
- `transactions`: the transaction a command runs in. Retried on deadlock or
  serialization failure; shared, each command in a savepoint, with the commands queued
  behind it on the same market (`book_command`). Steps 2 to 6 run inside it, step 7
  after its commit.
- `command`: `Command`, the working state of one command under the book lock: the
  locks (steps 2 and 4), the reads of the book, the postings, the one pipeline that
  writes a stage (step 5) and the events (step 7). A check that needs the book (the
  last trade, a user's resting orders) runs once `Command.begin` has the lock, as
  `stops` refuses a stop that the last trade already reached.
- `matching`: one order against the book (step 3): the price band, post-only, funds,
  fill-or-kill, price-time priority, self-trade prevention (its three modes), how each
  trade settles, and what rests or expires; an iceberg's slices, and a GTD maker past its
  time, which expires when met (`orders.expiry` expires the rest on time).
- `stops`: stop orders: accepting and amending a pending stop, finding the stops a
  command's trades crossed, triggering them (step 6) and the cascade's bound; trailing
  stops, whose stop price follows the trades.
- `lists`: order lists (an OCO: a limit and a stop sharing one hold; a bracket: an entry
  whose fills place an OCO of exits): placing one, and the hooks `matching`, `stops` and
  `auction` call when a listed order fills, rests, triggers or is cancelled (only for an
  order whose `order_list_id` is set), so the first order of a pair to act cancels the
  other. After each stage `Command.finish` and `stops` place the exits of the brackets the
  stage filled (`exits_place`), and at the end the command marks done the lists it left
  with no active order.
- `auction`: call auctions: the circuit breaker `matching` asks before each trade (its
  reference price read with the lock, step 2), the orders that rest without matching
  while the market is in an auction, and the uncross at a single price that ends it
  (`orders.auctions` runs it when it is due).

Imports point one way: `command` -> `stops` -> `matching` -> `auction` -> `lists` -> `rules`,
and each may use `caches` and `transactions` (`stops`, `matching` and `auction` name `Command` in
annotations only); `orders.services` and `orders.auctions` import them, and nothing here
imports either.
"""
