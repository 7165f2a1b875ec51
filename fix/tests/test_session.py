"""The session layer, driven by a hand-written initiator: logon and logout, heartbeats and
test requests, sequence numbers, resends, resets, malformed and unsupported messages."""

import datetime
import time

import pytest
from django.utils import timezone

from accounts.models import ApiKey
from fix.models import FixMessage, FixSession

from .client import Client, frame, utc_now
from .conftest import GatewayThread

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def test_a_trade_key_logs_on_to_an_order_entry_session_and_logs_out(connect, trade_key):
    alice = connect("ALICE")

    answer = alice.logon(trade_key, heartbeat=30)

    assert (answer[49], answer[56], answer[34], answer[108], answer[98]) == ("QTRADES", "ALICE", "1", "30", "0")
    session = FixSession.objects.get(sender_comp_id="ALICE")
    assert session.kind == "order_entry" and session.user.username == "alice"
    assert alice.logout()[34] == "2"
    assert FixMessage.objects.filter(session=session).count() == 2  # written before they were sent


@pytest.mark.parametrize(
    ("change", "text"),
    [
        ({553: "nothing1"}, "API_KEY_INVALID"),
        ({554: "nothing1.secret"}, "API_KEY_INVALID"),
        ({108: 0}, "HeartBtInt (108)"),
        ({98: 1}, "EncryptMethod"),
    ],
)
def test_a_bad_logon_is_answered_with_a_logout_and_closed(connect, trade_key, change, text):
    alice = connect("ALICE")
    fields = {98: 0, 108: 30, 553: trade_key.split(".")[0], 554: trade_key, **change}

    alice.send("A", list(fields.items()))

    answer = alice.expect("5")
    assert text in answer[58]
    assert alice.closed()
    assert not FixSession.objects.filter(sender_comp_id="ALICE", logged_on_at__isnull=False).exists()


def test_the_target_must_be_the_venue(connect, trade_key):
    alice = connect("ALICE")
    alice.send("A", [(98, 0), (108, 30), (553, trade_key[:8]), (554, trade_key)], target="ELSEWHERE")
    assert "TargetCompID (56) must be QTRADES" in alice.expect("5")[58]


def test_a_sender_comp_id_stays_bound_to_its_key(connect, trade_key, bob):
    from accounts.keys import api_key_create

    first = connect("ALICE")
    first.logon(trade_key)
    first.logout()
    _, bobs_key = api_key_create(user=bob, name="fix", scopes=["read", "trade"])

    thief = connect("ALICE")
    thief.logon(bobs_key, expect=False)

    assert "bound to another API key" in thief.expect("5")[58]


def test_one_live_connection_per_sender_comp_id(connect, trade_key):
    first = connect("ALICE")
    first.logon(trade_key)

    second = connect("ALICE")
    second.logon(trade_key, seq=2, expect=False)

    assert "already logged on" in second.expect("5")[58]
    assert second.closed()
    first.send("1", [(112, "still-here")])
    assert first.expect("0")[112] == "still-here"


def test_heartbeats_come_when_nothing_else_does_and_a_test_request_is_answered(connect, trade_key):
    alice = connect("ALICE")
    alice.logon(trade_key, heartbeat=1)

    beat = alice.read(timeout=3)
    alice.send("1", [(112, "ping-1")])
    answer = alice.expect("0", skip=())
    while answer.get(112) is None:
        answer = alice.expect("0", skip=())

    assert beat is not None and beat.type in ("0", "1")
    assert answer[112] == "ping-1"


def test_a_silent_client_gets_a_test_request_then_a_logout(connect, trade_key):
    alice = connect("ALICE")
    alice.logon(trade_key, heartbeat=1)

    seen = []
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and not any(m.type == "5" for m in seen):
        message = alice.read(timeout=1)
        if message is not None:
            seen.append(message)

    types = [m.type for m in seen]
    assert "1" in types and types[-1] == "5"
    assert "TestRequest" in seen[-1][58]
    assert alice.closed()


def test_sequence_numbers_resume_across_reconnects(connect, trade_key):
    alice = connect("ALICE")
    alice.logon(trade_key)
    alice.send("1", [(112, "a")])
    alice.expect("0")
    alice.logout()  # our 1..3, theirs 1..3

    again = connect("ALICE", seq=4)
    answer = again.logon(trade_key)

    assert answer[34] == "4"
    again.send("1", [(112, "b")])
    assert again.expect("0")[34] == "5"


def test_a_logon_below_the_expected_number_is_logged_out(connect, trade_key):
    alice = connect("ALICE")
    alice.logon(trade_key)
    alice.logout()

    again = connect("ALICE", seq=1)
    again.logon(trade_key, expect=False)

    answer = again.expect("5", skip=())
    assert "MsgSeqNum too low, expecting 3 but received 1" in answer[58]
    assert again.closed()


def test_reset_seq_num_flag_starts_both_sides_again_at_one(connect, trade_key):
    alice = connect("ALICE")
    alice.logon(trade_key)
    alice.logout()

    again = connect("ALICE", seq=1)
    answer = again.logon(trade_key, reset=True)

    assert (answer[34], answer[141]) == ("1", "Y")
    assert FixSession.objects.get(sender_comp_id="ALICE").generation == 2


def test_a_gap_in_the_clients_numbers_is_asked_for_and_held_messages_wait_for_it(connect, trade_key):
    alice = connect("ALICE")
    alice.logon(trade_key)

    alice.send("1", [(112, "after-gap")], seq=5)
    ask = alice.expect("2")
    assert (ask[7], ask[16]) == ("2", "0")
    assert alice.quiet(0.3) == []  # the test request waits for the gap

    alice.send("4", [(123, "Y"), (36, 5)], seq=2, poss_dup=True)

    assert alice.expect("0")[112] == "after-gap"
    alice.seq = 6
    alice.send("1", [(112, "next")])
    assert alice.expect("0")[112] == "next"


def test_a_sequence_reset_sets_the_expected_number(connect, trade_key):
    alice = connect("ALICE")
    alice.logon(trade_key)

    alice.send("4", [(36, 10)], seq=99)
    alice.seq = 10
    alice.send("1", [(112, "ten")])

    assert alice.expect("0")[112] == "ten"


def test_a_resend_request_resends_reports_and_gap_fills_session_messages(connect, trade_key):
    alice = connect("ALICE")
    alice.logon(trade_key)  # ours: 1 Logon
    alice.new_order("c-1", "buy", "1", "90")  # ours: 2 ExecutionReport new
    first = alice.expect("8")
    alice.send("1", [(112, "t")])  # ours: 3 Heartbeat
    alice.expect("0")

    alice.send("2", [(7, 1), (16, 0)])

    gap = alice.expect("4", skip=())
    resent = alice.expect("8", skip=())
    tail = alice.expect("4", skip=())
    assert (gap[34], gap[123], gap[36], gap[43]) == ("1", "Y", "2", "Y")
    assert (resent[34], resent[43], resent[122], resent[17]) == ("2", "Y", first[52], first[17])
    assert resent[11] == "c-1" and resent[37] == first[37]
    assert (tail[34], tail[36]) == ("3", "4")


def test_a_malformed_message_is_rejected_and_the_session_goes_on(connect, trade_key):
    alice = connect("ALICE")
    alice.logon(trade_key)

    seq = alice.send("2", [(7, 1)])  # no EndSeqNo
    reject = alice.expect("3")

    assert (reject[45], reject[371], reject[373]) == (str(seq), "16", "1")
    alice.send("1", [(112, "alive")])
    assert alice.expect("0")[112] == "alive"


def test_a_message_without_sending_time_is_rejected(connect, trade_key):
    alice = connect("ALICE")
    alice.logon(trade_key)

    alice.send_raw(frame([(35, "1"), (49, "ALICE"), (56, "QTRADES"), (34, 2), (112, "x")]))
    alice.seq = 3

    reject = alice.expect("3")
    assert (reject[45], reject[371], reject[373]) == ("2", "52", "1")


def test_a_garbled_message_is_dropped_as_fix_says(connect, trade_key):
    alice = connect("ALICE")
    alice.logon(trade_key)
    good = frame([(35, "1"), (49, "ALICE"), (56, "QTRADES"), (34, 2), (52, utc_now()), (112, "x")])

    alice.send_raw(good[:-4] + b"000\x01")  # a wrong checksum: dropped, its number not used
    alice.send("1", [(112, "y")], seq=2)

    assert alice.expect("0")[112] == "y"


def test_an_unsupported_message_gets_a_business_message_reject(connect, trade_key):
    alice = connect("ALICE")
    alice.logon(trade_key)

    seq = alice.send("AF", [(584, "m-1"), (585, 7)])  # OrderMassStatusRequest
    reject = alice.expect("j")

    assert (reject[45], reject[372], reject[380]) == (str(seq), "AF", "3")


def test_the_first_message_must_be_a_logon(gateway, trade_key):
    client = Client(gateway.port, "ALICE")
    client.send("1", [(112, "hello")])
    assert client.closed()
    client.close()


def test_a_resend_request_past_a_gap_is_answered_at_once_and_only_once(connect, trade_key):
    alice = connect("ALICE")
    alice.logon(trade_key)  # ours: 1

    alice.send("2", [(7, 1), (16, 1)], seq=4)  # theirs 2 and 3 are missing
    gap_fill = alice.expect("4", skip=())
    ask = alice.expect("2", skip=())
    alice.send("4", [(123, "Y"), (36, 4)], seq=2, poss_dup=True)
    alice.seq = 5
    alice.send("1", [(112, "after")])

    assert (gap_fill[34], gap_fill[36]) == ("1", "2")
    assert (ask[7], ask[16]) == ("2", "0")
    assert alice.expect("0")[112] == "after"
    assert [m.type for m in alice.quiet(0.3)] == []


@pytest.mark.parametrize(("field", "tag", "reason"), [(b"58=", "58", "4"), (b"x1=2", None, "0")])
def test_a_field_without_a_value_or_a_tag_number_is_rejected(connect, trade_key, field, tag, reason):
    alice = connect("ALICE")
    alice.logon(trade_key)
    good = frame([(35, "1"), (49, "ALICE"), (56, "QTRADES"), (34, 2), (52, utc_now()), (112, "x")])
    body = good[good.index(b"35=") : good.rindex(b"10=")] + field + b"\x01"
    head = b"8=FIX.4.4\x019=" + str(len(body)).encode() + b"\x01"
    alice.send_raw(head + body + f"10={sum(head + body) % 256:03d}\x01".encode())
    alice.seq = 3

    reject = alice.expect("3")

    assert (reject[45], reject[373], reject.get(371)) == ("2", reason, tag)
    alice.send("1", [(112, "alive")])
    assert alice.expect("0")[112] == "alive"


def test_a_second_gateway_refuses_a_session_another_holds_until_it_is_let_go(connect, trade_key):
    first = connect("ALICE")
    first.logon(trade_key)
    other = GatewayThread().start()
    try:
        elsewhere = Client(other.port, "ALICE", seq=2)
        elsewhere.logon(trade_key, expect=False)
        refused = elsewhere.expect("5")
        first.logout()
        again = Client(other.port, "ALICE", seq=first.seq)
        answer = again.logon(trade_key)
        again.logout()
        elsewhere.close()
    finally:
        other.stop()

    assert "already logged on at another gateway" in refused[58]
    assert answer[34] == "3"


def test_the_hold_of_a_gateway_that_died_lapses(connect, trade_key):
    key = ApiKey.objects.get(prefix=trade_key.split(".")[0])
    FixSession.objects.create(
        sender_comp_id="ALICE",
        api_key=key,
        user=key.user,
        kind="order_entry",
        held_by="gone-host:1:dead",
        held_until=timezone.now() - datetime.timedelta(seconds=1),
    )
    alice = connect("ALICE")

    assert alice.logon(trade_key)[34] == "1"
    assert FixSession.objects.get(sender_comp_id="ALICE").held_by != "gone-host:1:dead"


def test_a_revoked_key_is_refused_and_its_session_logged_out(connect, trade_key, alice):
    from accounts.keys import api_key_revoke

    client = connect("ALICE")
    client.logon(trade_key)
    api_key_revoke(user=alice, key_id=ApiKey.objects.get(prefix=trade_key.split(".")[0]).pk)

    client.new_order("after-revoke", "buy", "1", "90")

    assert client.expect("8")[58].startswith("API_KEY_INVALID: ")
    assert client.expect("5")[58].startswith("API_KEY_INVALID: ")
    assert client.closed()


def test_a_revoked_read_keys_drop_copy_is_logged_out_within_the_recheck(connect, read_key, alice, monkeypatch):
    from accounts.keys import api_key_revoke
    from fix import session

    monkeypatch.setattr(session, "KEY_RECHECK_SECONDS", 0.5)
    copy = connect("ALICE-COPY")
    copy.logon(read_key)

    api_key_revoke(user=alice, key_id=ApiKey.objects.get(prefix=read_key.split(".")[0]).pk)

    assert copy.expect("5", timeout=10)[58].startswith("API_KEY_INVALID: ")
