"""What the FIX gateway keeps in the database: each session's sequence numbers and every
message it sent, so a session resumes across reconnects and gateway restarts, and a
client's ResendRequest is answered from here (docs/FIX.md, "Sessions")."""

from django.conf import settings
from django.db import models


class FixSession(models.Model):
    """One client's FIX session: a SenderCompID bound to the API key that first logged on with it."""

    class Kind(models.TextChoices):
        ORDER_ENTRY = "order_entry"  # a key with the trade scope
        DROP_COPY = "drop_copy"  # a read key: it only receives

    sender_comp_id = models.CharField(max_length=64, unique=True)
    api_key = models.ForeignKey("accounts.ApiKey", on_delete=models.PROTECT, related_name="fix_sessions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="fix_sessions")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # Bumped by a logon with ResetSeqNumFlag (141=Y): the messages of earlier generations
    # stay for the audit and are never resent.
    generation = models.PositiveIntegerField(default=1)
    # The MsgSeqNum expected next from the client (the next one we send is one past the
    # last FixMessage of this generation).
    next_in_seq = models.PositiveBigIntegerField(default=1)
    # The gateway process holding the session's one live connection, until when: renewed
    # while it lives, so a second gateway refuses the SenderCompID, and a crashed one's
    # hold lapses on its own (fix.services.LEASE_SECONDS).
    held_by = models.CharField(max_length=128, blank=True, default="")
    held_until = models.DateTimeField(null=True, blank=True)
    logged_on_at = models.DateTimeField(null=True, blank=True)
    logged_out_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.sender_comp_id


class FixMessage(models.Model):
    """One message the gateway sent, written before it went on the wire."""

    session = models.ForeignKey(FixSession, on_delete=models.CASCADE, related_name="messages")
    generation = models.PositiveIntegerField()
    seq = models.PositiveBigIntegerField()
    msg_type = models.CharField(max_length=4)
    sending_time = models.CharField(max_length=32)  # SendingTime (52) as sent: OrigSendingTime on a resend
    # The body's fields (after the standard header, before the checksum), SOH-separated.
    body = models.TextField()
    # ExecID (17) of an execution report: one report per event, whichever path made it first.
    exec_id = models.CharField(max_length=64, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # A sequence number is used once per generation: a resend reads exactly one message.
            models.UniqueConstraint(fields=["session", "generation", "seq"], name="fixmessage_one_per_seq"),
        ]
        indexes = [
            # The exec ids a session already reported, read at logon to report nothing twice.
            models.Index(
                fields=["session", "exec_id"],
                name="fixmessage_exec_id",
                condition=models.Q(exec_id__isnull=False),
            ),
        ]

    def __str__(self):
        return f"{self.session_id}:{self.generation}:{self.seq} {self.msg_type}"
