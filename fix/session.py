"""The FIX 4.4 session layer: one `Session` per TCP connection (docs/FIX.md, "Sessions").

Logon by API key, sequence numbers, heartbeats and test requests, resend requests,
sequence resets, logout, and Reject (3) / BusinessMessageReject (j); the application
messages go to `fix.application`, market data to `fix.marketdata`.

Why a session layer of our own, on the `simplefix` codec, rather than a FIX engine:
- asyncfix (1.0.1, the maintained asyncio engine on PyPI): its acceptor,
  `AsyncFIXDummyServer`, serves a single connection ("Multiple connections are not
  allowed for dummy server") and journals sequence numbers and messages to SQLite
  (`asyncfix.journaler.Journaler`), where a venue needs many sessions per process and
  its journal in PostgreSQL beside the orders, to survive a restart or a second host.
- QuickFIX's Python bindings: no wheel in this project's package index (a long C++
  build from the sdist), and they keep their own message store (files or their own
  SQL tables and schema) outside the application's transactions.
What remains is a small state machine (this module) over a maintained codec.

Rules this module keeps:
- Every message is sequenced and written to PostgreSQL (`fix.services.fix_messages_store`)
  before it goes on the wire, by one writer task per session that sends in sequence order.
  If the write fails, or has not answered within `STORE_WAIT_SECONDS` (the database is
  away, and the pool waits for it far longer), the message is sent anyway: a
  ResendRequest for it is answered with a gap fill, and the session never drops without
  a Logout. While that write still waits, later messages go out at once and are written
  after it, if it succeeds.
- Heartbeats and the TestRequest deadline keep their time whatever the database does:
  the timer's own queries run beside it, never in its way, and a ResendRequest's read
  holds up the writer no longer than a store (a Reject asks the client again).
- A report is sent once per ExecID (`fix.reports`), whichever path saw the event first.
- The event loop never waits on the database: every query runs in a worker thread.
- Inbound messages are handled one at a time, in sequence order; a message past a gap is
  held until the gap is filled by the client's resend.
"""

import asyncio
import contextlib
import datetime
import logging
import time

from django.db import close_old_connections

from accounts.keys import api_key_reread
from quantumtrades.core.errors import ErrorCode

from . import application, reports
from .codec import Garbled, Message, body_fields, body_text, encode, next_frame, utc_timestamp
from .services import (
    LogonRefused,
    Outgoing,
    fix_messages_between,
    fix_messages_store,
    fix_session_logon,
    fix_session_progress,
)

log = logging.getLogger(__name__)

TARGET_COMP_ID = "QTRADES"
HEARTBEAT_MIN = 1
HEARTBEAT_MAX = 300
# The first message must be a Logon within this long, or the connection is closed.
LOGON_TIMEOUT = 10.0
# Messages resent as they were on a ResendRequest (with PossDupFlag); every other message
# in the range (session messages, market data) is gap-filled.
RESENT_TYPES = frozenset({"8", "9", "r", "j", "3"})
# Session-level messages, and the application messages this venue does not take (j, 380=3).
SESSION_TYPES = frozenset({"0", "1", "2", "3", "4", "5", "A"})
READ_SIZE = 65536
MAX_BUFFER = 1 << 20
# How often a session's API key is read again (a revoked key's session is logged out).
KEY_RECHECK_SECONDS = 30.0
KEY_REFUSED = f"{ErrorCode.API_KEY_INVALID}:"
# Held messages past a gap: beyond this many the session logs out (a client that never resends).
MAX_HELD = 10_000
# How long a batch of outgoing messages waits for the message store before it is sent
# anyway, and a ResendRequest's read before it is refused. The store answers in
# milliseconds while PostgreSQL is up; while it is away, the pool waits DB_POOL_TIMEOUT
# (10 s) for a connection, longer than a client with a short HeartBtInt waits for the
# answer to its TestRequest before it drops the session.
STORE_WAIT_SECONDS = 1.0


class Session:
    """One TCP connection of a FIX client, from Logon to Logout."""

    def __init__(self, gateway, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.gateway = gateway
        self.reader = reader
        self.writer = writer
        self.loop = asyncio.get_running_loop()
        peer = writer.get_extra_info("peername")
        self.address = peer[0] if isinstance(peer, tuple) else None
        self.buffer = bytearray()
        self.state = None  # fix.services.LogonResult once logged on
        self.sender_comp_id = None
        self.next_in = 1
        self.next_out = 1
        self.saved_in = 1
        self.heartbeat = 30
        self.last_in = self.last_out = self.loop.time()
        self.test_request = None  # (TestReqID, when sent)
        self.exec_ids = set()
        self.queue = []
        self.wake = asyncio.Event()
        self.writer_task = None
        self.timer_task = None
        self.closing = False
        self.logout_sent = False
        self.held = {}  # MsgSeqNum -> Message past a gap (None: the Logon, already handled)
        self.resend_asked_to = 0
        self.logged_on_at = None
        self.stream = None  # fix.gateway.Stream: the user's private stream and market data
        self.in_command = False
        self.held_private = []  # the stream's rounds that came while a command ran
        self.storing = None  # the task writing a batch to the message store, while it runs
        self.sent_unstored = []  # messages sent while `storing` ran, written after it
        self.timer_chore = None  # the timer's query in flight (key recheck, progress)

    # --- The connection's life -------------------------------------------------------

    async def run(self):
        self.writer_task = self.loop.create_task(self._write_loop())
        try:
            await self._read_loop()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("FIX %s: session failed", self.sender_comp_id)
            if self.state is not None and not self.logout_sent:
                self.logout("Something went wrong on our side; log on again.")
        finally:
            await self._finish()

    async def _read_loop(self):
        deadline = self.loop.time() + LOGON_TIMEOUT
        while not self.closing:
            timeout = max(0.1, deadline - self.loop.time()) if self.state is None else None
            try:
                data = await asyncio.wait_for(self.reader.read(READ_SIZE), timeout)
            except TimeoutError:
                log.info("FIX: no Logon from %s in %ss", self.address, LOGON_TIMEOUT)
                return
            if not data:
                return
            self.buffer += data
            if len(self.buffer) > MAX_BUFFER:
                log.warning("FIX %s: more than %d bytes without a whole message", self.sender_comp_id, MAX_BUFFER)
                return
            while not self.closing:
                try:
                    frame = next_frame(self.buffer)
                except Garbled as exc:
                    # FIX: a garbled message is ignored, not rejected (it has no trusty MsgSeqNum).
                    log.warning("FIX %s: garbled message dropped: %s", self.sender_comp_id, exc)
                    if self.state is None:
                        return
                    continue
                if frame is None:
                    break
                self.last_in = self.loop.time()
                self.test_request = None
                await self.receive(Message(frame))

    async def _finish(self):
        self.closing = True
        self.wake.set()
        if self.writer_task is not None:
            try:
                await asyncio.wait_for(self.writer_task, 5.0)
            except (TimeoutError, Exception):
                self.writer_task.cancel()
        if self.timer_task is not None:
            self.timer_task.cancel()
        self.writer.close()
        pending = {task for task in (self.storing, self.timer_chore) if task is not None}
        if pending:
            # Their number of the next inbound message must not land after the one below.
            await asyncio.wait(pending)
        if self.state is not None:
            self.gateway.session_ended(self)
            try:
                await self.db(
                    fix_session_progress,
                    session_id=self.state.session_id,
                    next_in_seq=self.next_in,
                    logged_out_by=self.gateway.owner,
                )
            except Exception as exc:
                log.warning("FIX %s: could not record the logout: %s", self.sender_comp_id, exc)
        elif self.sender_comp_id is not None:
            self.gateway.release(self)

    async def db(self, function, *args, **kwargs):
        """Run `function` in a worker thread with its own database connection."""

        def call():
            close_old_connections()
            try:
                return function(*args, **kwargs)
            finally:
                close_old_connections()

        return await self.loop.run_in_executor(self.gateway.executor, call)

    # --- Inbound ---------------------------------------------------------------------

    async def receive(self, message: Message):
        if self.state is None:
            if message.msg_type != "A":
                log.info("FIX: first message from %s is not a Logon (35=%s); closed", self.address, message.msg_type)
                self.closing = True
                return
            await self.logon(message)
            return
        seq_text = message.get(34)
        if seq_text is None or not seq_text.isdigit():
            self.logout(f"MsgSeqNum (34) missing or not a number in a {message.msg_type or '?'} message.")
            return
        seq = int(seq_text)
        if message.get(49) != self.sender_comp_id or message.get(56) != TARGET_COMP_ID:
            self.reject(seq, "CompID problem: SenderCompID (49) or TargetCompID (56) is not this session's.", reason=9)
            self.logout("CompID problem.")
            return
        if message.msg_type == "4" and message.get(123) != "Y":
            # SequenceReset-Reset: the expected number is set, whatever this one's MsgSeqNum.
            new_seq = message.get(36)
            if new_seq is None or not new_seq.isdigit():
                self.reject(seq, "NewSeqNo (36) is required, a whole number.", tag=36, reason=1)
            elif int(new_seq) < self.next_in:
                self.reject(seq, f"NewSeqNo (36) {new_seq} is below the expected {self.next_in}.", tag=36, reason=5)
            else:
                self.next_in = int(new_seq)
                self.held = {s: m for s, m in self.held.items() if s >= self.next_in}
                await self._drain_held()
            return
        if seq > self.next_in:
            if message.msg_type == "5":
                await self.process(message, seq)
                return
            if len(self.held) >= MAX_HELD:
                self.logout("Too many messages past a sequence gap that was never filled.")
                return
            if message.msg_type == "2":
                # Answered at once (FIX allows it), and only its number waits for the gap.
                await self.process(message, seq, advance=False)
                message = None
            self.held[seq] = message
            if self.resend_asked_to < seq:
                self.resend_asked_to = seq
                self.send("2", [(7, self.next_in), (16, 0)])
            return
        if seq < self.next_in:
            if message.get(43) == "Y":
                return  # a possible duplicate already handled
            self.logout(f"MsgSeqNum too low, expecting {self.next_in} but received {seq}.")
            return
        await self.process(message, seq)
        await self._drain_held()

    async def _drain_held(self):
        while self.next_in in self.held and not self.closing:
            seq = self.next_in
            message = self.held.pop(seq)
            if message is None:
                self.next_in = seq + 1
            else:
                await self.process(message, seq)

    async def process(self, message: Message, seq: int, *, advance: bool = True):
        """One message in sequence: the session's, or the application's."""
        if advance:
            self.next_in = seq + 1
        kind = message.msg_type
        if message.problem is not None:
            tag, reason = message.problem
            what = "is not a tag number" if reason == 0 else "has no value"
            self.reject(seq, f"Field {tag} {what}.", tag=tag if tag.isdigit() else None, reason=reason, msg_type=kind)
            return
        if 52 not in message:
            self.reject(seq, "SendingTime (52) is required.", tag=52, reason=1, msg_type=kind)
            return
        if kind == "0":
            return
        if kind == "1":
            if message.get(112) is None:
                self.reject(seq, "TestReqID (112) is required.", tag=112, reason=1, msg_type=kind)
            else:
                self.send("0", [(112, message.get(112))])
            return
        if kind == "2":
            begin, end = message.get(7), message.get(16)
            if begin is None or end is None or not begin.isdigit() or not end.isdigit():
                tag = 7 if begin is None or not begin.isdigit() else 16
                self.reject(seq, "BeginSeqNo (7) and EndSeqNo (16) are required, whole numbers.", tag=tag, reason=1)
                return
            self.queue.append(("resend", int(begin), int(end)))
            self.wake.set()
            return
        if kind == "4":
            new_seq = message.get(36)
            if new_seq is None or not new_seq.isdigit():
                self.reject(seq, "NewSeqNo (36) is required, a whole number.", tag=36, reason=1, msg_type=kind)
            elif int(new_seq) > self.next_in:
                self.next_in = int(new_seq)
            return
        if kind == "5":
            if not self.logout_sent:
                self.logout(None)
            self.closing = True
            return
        if kind == "3":
            log.info("FIX %s: our message %s was rejected: %s", self.sender_comp_id, message.get(45), message.get(58))
            return
        if kind == "A":
            self.reject(seq, "This session is already logged on.", reason=99, msg_type=kind)
            return
        if not kind or not kind.isalnum() or len(kind) > 2:
            self.reject(seq, f"MsgType (35) {kind[:8]!r} is not a FIX message type.", tag=35, reason=11)
            return
        handler = application.HANDLERS.get(kind)
        if kind == "V" and self.stream is not None:
            await self.stream.market_data_request(message)
            return
        if handler is None:
            self.business_reject(seq, kind, 3, f"MsgType {kind} is not supported by this venue (docs/FIX.md).")
            return
        if not self.may_trade:
            self.business_reject(seq, kind, 6, "PERMISSION_DENIED: a drop-copy session (read key) only receives.")
            return
        # The command's own answers go first; what the stream says meanwhile waits for them
        # (and its duplicates of them are dropped by ExecID).
        self.in_command = True
        try:
            answers = await self.db(application.run, handler, self.state, message)
        finally:
            self.in_command = False
        self.deliver(answers)
        held, self.held_private = self.held_private, []
        for messages in held:
            self.on_private(messages)
        if any(str(dict(fields).get(58, "")).startswith(KEY_REFUSED) for _, _, fields in answers):
            self.logout("API_KEY_INVALID: The API key was revoked; log on with another.")

    @property
    def may_trade(self) -> bool:
        return self.state is not None and self.state.kind == "order_entry"

    # --- Logon -------------------------------------------------------------------------

    async def logon(self, message: Message):
        sender = message.get(49)
        problem = None
        if not sender or len(sender) > 64 or not sender.isprintable():
            problem = "SenderCompID (49) is required: your own name, 1 to 64 characters."
        elif message.get(56) != TARGET_COMP_ID:
            problem = f"TargetCompID (56) must be {TARGET_COMP_ID}."
        elif message.get(98, "0") != "0":
            problem = "EncryptMethod (98) must be 0: the connection is encrypted by TLS, not by FIX."
        elif not (message.get(108) or "").isdigit() or not HEARTBEAT_MIN <= int(message.get(108)) <= HEARTBEAT_MAX:
            problem = f"HeartBtInt (108) is required: {HEARTBEAT_MIN} to {HEARTBEAT_MAX} seconds."
        elif not message.get(553) or not message.get(554):
            problem = "Username (553) is the API key's prefix and Password (554) the whole key: both are required."
        elif not (message.get(34) or "").isdigit():
            problem = "MsgSeqNum (34) is required."
        if problem is None and not self.gateway.claim(sender, self):
            problem = f"SenderCompID {sender} is already logged on: one connection per SenderCompID."
            sender = None
        self.sender_comp_id = sender
        if problem is not None:
            return self.refuse_logon(message, problem)
        reset = message.get(141) == "Y"
        try:
            self.state = await self.db(
                fix_session_logon,
                username=message.get(553),
                password=message.get(554),
                sender_comp_id=sender,
                address=self.address,
                reset=reset,
                owner=self.gateway.owner,
            )
        except LogonRefused as exc:
            return self.refuse_logon(message, str(exc))
        except Exception as exc:
            log.warning("FIX %s: logon failed: %s", sender, exc)
            return self.refuse_logon(
                message, f"{ErrorCode.SERVICE_UNAVAILABLE}: the venue could not log you on; retry."
            )
        state = self.state
        self.next_in, self.next_out, self.saved_in = state.next_in_seq, state.next_out_seq, state.next_in_seq
        self.exec_ids = state.exec_ids
        self.heartbeat = int(message.get(108))
        self.logged_on_at = datetime.datetime.now(datetime.UTC)
        seq = int(message.get(34))
        if seq < self.next_in and not reset:
            self.logout(f"MsgSeqNum too low, expecting {self.next_in} but received {seq}.")
            return
        answer = [(98, 0), (108, self.heartbeat)]
        if reset:
            answer.append((141, "Y"))
        self.send("A", answer)
        log.info("FIX %s: logged on (%s, user %s)", sender, state.kind, state.user_id)
        self.timer_task = self.loop.create_task(self._timer())
        self.stream = await self.gateway.stream_for(self)
        if seq > self.next_in:
            self.held[seq] = None
            self.resend_asked_to = seq
            self.send("2", [(7, self.next_in), (16, 0)])
        else:
            self.next_in = seq + 1
        if state.catch_up_since is not None:
            self.catch_up(state.catch_up_since)

    def refuse_logon(self, message, text):
        """A Logout that is not part of any session's sequence: written only to the socket."""
        log.info("FIX: logon from %s (%s) refused: %s", self.address, message.get(49), text)
        sender, target = TARGET_COMP_ID, message.get(49) or "UNKNOWN"
        if self.state is None:
            self.writer.write(encode("5", 1, sender, target, utc_timestamp(), [(58, text)]))
            self.logout_sent = True
            self.closing = True
        else:
            self.logout(text)

    # --- Outbound ------------------------------------------------------------------------

    def send(self, msg_type: str, fields, exec_id: str | None = None) -> None:
        """Queue a message for the writer; a report whose ExecID was sent is dropped."""
        if exec_id is not None:
            if exec_id in self.exec_ids:
                return
            self.exec_ids.add(exec_id)
        self.queue.append((exec_id, msg_type, fields))
        self.wake.set()

    def deliver(self, messages) -> None:
        for exec_id, msg_type, fields in messages:
            self.send(msg_type, fields, exec_id)

    def reject(self, seq, text, *, tag=None, reason=99, msg_type=None):
        fields = [(45, seq)]
        if tag is not None:
            fields.append((371, tag))
        if msg_type:
            fields.append((372, msg_type))
        fields += [(373, reason), (58, text)]
        self.send("3", fields)

    def business_reject(self, seq, msg_type, reason, text):
        self.send("j", [(45, seq), (372, msg_type), (380, reason), (58, text)])

    def logout(self, text: str | None):
        """Say goodbye (with `text`, if any); the connection closes once it is written."""
        if self.logout_sent:
            return
        self.logout_sent = True
        self.send("5", [(58, text)] if text else [])
        self.closing = True

    def catch_up(self, since):
        """Report what changed since `since` and was not reported (a reconnect, a stream gap)."""

        async def run():
            try:
                self.deliver(await self.db(application.reports_since, self.state.user_id, since))
            except Exception as exc:
                log.warning("FIX %s: could not read the reports since %s: %s", self.sender_comp_id, since, exc)

        self.gateway.spawn(run())

    async def _write_loop(self):
        while True:
            if not self.queue:
                if self.closing:
                    break
                self.wake.clear()
                await self.wake.wait()
                continue
            item = self.queue[0]
            if item[0] == "resend":
                self.queue.pop(0)
                await self._resend(item[1], item[2])
                continue
            batch = []
            while self.queue and self.queue[0][0] != "resend":
                batch.append(self.queue.pop(0))
            await self._write(batch)
        with contextlib.suppress(Exception):
            await self.writer.drain()
        # Whatever decided the session ends (a Logout either way, the timer), the reader
        # stops here: closing the transport ends its read.
        self.writer.close()

    async def _write(self, batch):
        outgoing, wire = [], []
        for exec_id, msg_type, fields in batch:
            seq, self.next_out = self.next_out, self.next_out + 1
            sending_time = utc_timestamp()
            fields = [(tag, value) for tag, value in fields if value is not None]
            outgoing.append(Outgoing(seq, msg_type, sending_time, body_text(fields), exec_id))
            wire.append(encode(msg_type, seq, TARGET_COMP_ID, self.sender_comp_id, sending_time, fields))
        # Sent anyway when the store fails or keeps them waiting: a refusal, a heartbeat, an
        # answer to a TestRequest must reach the client while the database is away; a
        # resend of these numbers is a gap fill.
        if self.storing is None:
            self.storing = self.loop.create_task(self._store(outgoing))
            done, _ = await asyncio.wait({self.storing}, timeout=STORE_WAIT_SECONDS)
            if not done:
                log.warning(
                    "FIX %s: the message store has not answered in %ss; %d messages sent before they are stored",
                    self.sender_comp_id,
                    STORE_WAIT_SECONDS,
                    len(outgoing),
                )
        else:
            # One write at a time, and this batch does not wait behind the one in flight: it
            # is written after it, if that one succeeds.
            self.sent_unstored += outgoing
        await self._put(b"".join(wire))

    async def _store(self, outgoing):
        """Write `outgoing`, then what was sent while it was written, until nothing is left."""
        try:
            while outgoing:
                next_in = self.next_in
                try:
                    await self.db(
                        fix_messages_store,
                        session_id=self.state.session_id,
                        generation=self.state.generation,
                        messages=outgoing,
                        next_in_seq=next_in,
                        let_go=self.gateway.owner if any(m.msg_type == "5" for m in outgoing) else None,
                    )
                    self.saved_in = next_in
                except Exception as exc:
                    lost = len(outgoing) + len(self.sent_unstored)
                    self.sent_unstored = []
                    log.warning("FIX %s: %d messages not stored (%s); sent anyway", self.sender_comp_id, lost, exc)
                    return
                outgoing, self.sent_unstored = self.sent_unstored, []
        finally:
            self.storing = None

    async def _put(self, data: bytes):
        if self.writer.is_closing():
            return
        self.writer.write(data)
        self.last_out = self.loop.time()
        with contextlib.suppress(Exception):
            await self.writer.drain()

    async def _resend(self, begin: int, end: int):
        last = self.next_out - 1
        end = last if end == 0 or end > last else end
        if begin < 1 or begin > end:
            return
        # The write loop waits for this read, so everything queued behind it (heartbeats,
        # the answer to a TestRequest) waits too: no longer than for the store. A read that
        # answers later is dropped; the client asks again.
        reading = self.gateway.spawn(
            self.db(
                fix_messages_between,
                session_id=self.state.session_id,
                generation=self.state.generation,
                begin=begin,
                end=end,
            )
        )
        done, _ = await asyncio.wait({reading}, timeout=STORE_WAIT_SECONDS)
        try:
            if not done:
                # Its outcome is read when it comes, so asyncio does not log it as lost.
                reading.add_done_callback(lambda late: late.cancelled() or late.exception())
                raise TimeoutError(f"no answer in {STORE_WAIT_SECONDS}s")
            rows = reading.result()
        except Exception as exc:
            log.warning("FIX %s: resend %s-%s not read: %s", self.sender_comp_id, begin, end, exc)
            self.queue.insert(
                0,
                (
                    None,
                    "3",
                    [
                        (45, self.next_in - 1),
                        (373, 99),
                        (58, f"{ErrorCode.SERVICE_UNAVAILABLE}: the resend could not be read; ask again."),
                    ],
                ),
            )
            return
        stored = {row.seq: row for row in rows}
        wire, gap_from = [], None
        now = utc_timestamp()
        for seq in range(begin, end + 1):
            row = stored.get(seq)
            if row is not None and row.msg_type in RESENT_TYPES:
                if gap_from is not None:
                    wire.append(self._gap_fill(gap_from, seq, now))
                    gap_from = None
                wire.append(
                    encode(
                        row.msg_type,
                        seq,
                        TARGET_COMP_ID,
                        self.sender_comp_id,
                        now,
                        body_fields(row.body),
                        resend_of=row.sending_time,
                    )
                )
            elif gap_from is None:
                gap_from = seq
        if gap_from is not None:
            wire.append(self._gap_fill(gap_from, end + 1, now))
        await self._put(b"".join(wire))

    def _gap_fill(self, seq, new_seq, now):
        return encode("4", seq, TARGET_COMP_ID, self.sender_comp_id, now, [(123, "Y"), (36, new_seq)], resend_of=now)

    async def _timer(self):
        """Heartbeats, test requests, and the inbound number kept current in the database."""
        last_saved = key_checked = self.loop.time()
        while not self.closing:
            await asyncio.sleep(min(1.0, self.heartbeat / 4))
            now = self.loop.time()
            if now - self.last_out >= self.heartbeat:
                self.send("0", [])
            grace = self.heartbeat * 1.2 + 0.5
            if self.test_request is None and now - self.last_in > grace:
                test_id = f"T{int(time.time() * 1000)}"
                self.test_request = (test_id, now)
                self.send("1", [(112, test_id)])
            elif self.test_request is not None and now - self.test_request[1] > grace:
                self.logout("No answer to our TestRequest.")
                return
            if self.timer_chore is not None:
                continue  # its query still waits for the database; the heartbeats do not
            if now - key_checked > KEY_RECHECK_SECONDS:
                # A drop-copy session sends no commands: its key is read again here, so a
                # revoked key stops receiving within this long.
                key_checked = now
                self._chore(self._recheck_key())
            elif self.next_in != self.saved_in and now - last_saved > 5.0:
                last_saved = now
                self._chore(self._save_progress())

    def _chore(self, coroutine):
        """Run one of the timer's queries beside it, one at a time."""
        self.timer_chore = self.gateway.spawn(coroutine)
        self.timer_chore.add_done_callback(lambda _: setattr(self, "timer_chore", None))

    async def _recheck_key(self):
        with contextlib.suppress(Exception):
            if await self.db(api_key_reread, self.state.api_key) is None:
                self.logout("API_KEY_INVALID: The API key was revoked; log on with another.")

    async def _save_progress(self):
        next_in = self.next_in
        with contextlib.suppress(Exception):
            await self.db(fix_session_progress, session_id=self.state.session_id, next_in_seq=next_in)
            self.saved_in = next_in

    # --- From the private stream (`fix.gateway.Stream`) ---------------------------------

    def on_private(self, messages: list[dict]):
        """The `order` and `fill` messages of one round of the stream: report each change.

        A round may carry several commands' states of one order, say its New and the trade
        that filled it a moment later, published together. Each state is reported in turn
        with the fills that follow it: keeping the last alone, a drop copy (which has no
        command answers of its own) never heard of the New. A command lists its orders
        before their fills (`orders.engine.command`), so a fill belongs to the latest state
        of its order before it.
        """
        if self.in_command:
            self.held_private.append(messages)
            return
        states, latest = [], {}  # [(order, its fills)] in arrival order; order id -> its latest
        gap = None
        for message in messages:
            if message.get("type") == "order":
                state = ({**message, "type": message["order_type"]}, [])
                states.append(state)
                latest[message["id"]] = state
            elif message.get("type") == "fill":
                state = latest.get(message["order_id"])
                if state is not None:
                    state[1].append(message)
                elif gap is None:
                    gap = message["time"]  # a fill without its order: the catch-up reads it whole
        for order, fills in states:
            self.deliver(reports.order_reports(order, fills))
        if gap is not None:
            self.catch_up(datetime.datetime.fromisoformat(gap))
