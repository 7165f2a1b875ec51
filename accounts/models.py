import uuid

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.contrib.auth.models import UserManager as DjangoUserManager
from django.contrib.sessions.base_session import AbstractBaseSession
from django.db import models
from django.db.models import Q, Value
from django.db.models.functions import Lower
from django.utils import timezone
from rest_framework_api_key.models import AbstractAPIKey, BaseAPIKeyManager

from quantumtrades.core.money import MoneyField

from .usernames import UsernameValidator


class UserManager(DjangoUserManager):
    def named(self, username):
        """The user named `username` in any case (at most one: User's constraint), through
        the index of that constraint."""
        folded = Lower(Value(self.model.normalize_username(username)))
        return self.alias(folded_username=Lower("username")).filter(folded_username=folded)

    def get_by_natural_key(self, username):
        """Every login (web, API, admin) finds its user through this: "Alice" logs in as alice."""
        return self.named(username).get()


class User(AbstractUser):
    """A trader, an operator (is_staff) or the system fee account.

    Usernames are NFKC-normalised, unique whatever their case, and written in one script
    (accounts.usernames), so no two accounts look alike.
    """

    username_validator = UsernameValidator()
    username = models.CharField(
        "username",
        max_length=150,
        unique=True,
        help_text="Letters of one script, digits and @ . + - _ (at most 150).",
        validators=[username_validator],
        error_messages={"unique": "A user with that username already exists."},
    )

    # Market integrity (docs/API.md, "Operators"): the kill switch, the open-order limit and
    # the dead man's switch. The engine reads them with the user's balances, under its locks.
    trading_enabled = models.BooleanField(
        default=True, help_text="Off: the user's orders were cancelled and new ones are refused (the kill switch)."
    )
    trading_disabled_reason = models.CharField(max_length=200, blank=True, default="")
    max_open_orders = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Most orders (resting and pending stops) the user may have open at once. "
        "Empty: the venue's default (MAX_OPEN_ORDERS, 200).",
    )
    # The dead man's switch: unless armed again before then, the user's open orders and
    # pending stops are cancelled at this time (by whichever process is alive).
    cancel_orders_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = UserManager()

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"
        # The operators' actions on a trader (the console's trader page, accounts.roles).
        permissions = [
            ("disable_trading", "Can disable and enable a trader's trading (cancels their orders)"),
            ("sign_out_user", "Can sign a trader out everywhere"),
            ("adjust_balance", "Can adjust a balance through the ledger"),
        ]
        constraints = [
            # "Alice" beside "alice": refused by the database whatever door the name came
            # through; the forms and the API say so first (USERNAME_TAKEN). Logins look
            # names up through this index (UserManager.get_by_natural_key).
            models.UniqueConstraint(
                Lower("username"),
                name="user_username_case_insensitive",
                violation_error_message="A user with that username already exists.",
            ),
        ]
        indexes = [
            # The dead man's switch's sweeper reads the armed users whose time has come.
            models.Index(
                fields=["cancel_orders_at"], condition=Q(cancel_orders_at__isnull=False), name="user_cancel_orders_due"
            ),
        ]


class Asset(models.Model):
    code = models.CharField(max_length=12, primary_key=True)
    name = models.CharField(max_length=64)

    class Meta:
        ordering = ["code"]

    def __str__(self):
        return self.code


class Balance(models.Model):
    """What a user owns of one asset: free to use (available) and reserved by open orders (held).

    Changed only by `accounts.services`, always together with a LedgerEntry.
    """

    # Indexed by the unique constraint (see orders.Order.user); nothing reads the balances
    # of one asset but the reconciliation, which reads them all.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="balances", db_index=False
    )
    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="balances", db_index=False)
    available = MoneyField(default=0)
    held = MoneyField(default=0)

    class Meta:
        ordering = ["user_id", "asset_id"]
        constraints = [
            # The lock order of the engine (ascending user, asset) walks this unique index.
            models.UniqueConstraint(fields=["user", "asset"], name="balance_user_asset_unique"),
            # The last line of defence against overspending: the database refuses it.
            models.CheckConstraint(condition=Q(available__gte=0), name="balance_available_non_negative"),
            models.CheckConstraint(condition=Q(held__gte=0), name="balance_held_non_negative"),
        ]

    def __str__(self):
        return f"{self.user} {self.asset_id}: {self.available} + {self.held} held"

    @property
    def total(self):
        return self.available + self.held


class LedgerEntryQuerySet(models.QuerySet):
    def external(self):
        """Entries that bring money into or take it out of the platform."""
        return self.filter(kind__in=LedgerEntry.EXTERNAL_KINDS)


class LedgerEntry(models.Model):
    """One change to one balance. Append-only: the database refuses updates (see migration 0002)."""

    class Kind(models.TextChoices):
        DEPOSIT = "deposit"
        WITHDRAWAL = "withdrawal"
        HOLD = "hold"
        RELEASE = "release"
        TRADE = "trade"
        FEE = "fee"
        ADJUSTMENT = "adjustment"

    # Kinds that move money across the platform's boundary; all others move it between
    # balances (trade, fee) or within one (hold, release), so they sum to zero per asset.
    EXTERNAL_KINDS = (Kind.DEPOSIT, Kind.WITHDRAWAL, Kind.ADJUSTMENT)

    # Indexed by the indexes in Meta (see orders.Order.user).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="ledger_entries", db_index=False
    )
    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="ledger_entries", db_index=False)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    available_delta = MoneyField(default=0)
    held_delta = MoneyField(default=0)
    # Balance after this entry, so a statement reads without summing from the start.
    available_after = MoneyField()
    held_after = MoneyField()
    # What caused the entry, e.g. "order:42" or "trade:7"; free text for operators.
    reference = models.CharField(max_length=64, blank=True, default="")
    reason = models.CharField(max_length=255, blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = LedgerEntryQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "ledger entries"
        indexes = [
            # A user's statement, newest first in keyset pages (portfolio page,
            # /api/user/transactions): all of it, by asset, by kind.
            models.Index(fields=["user", "-id"], name="ledger_user_recent"),
            # Also what reconcile walks to sum the entries of each balance in order.
            models.Index(fields=["user", "asset", "-id"], name="ledger_user_asset_recent"),
            models.Index(fields=["user", "kind", "-id"], name="ledger_user_kind_recent"),
            # Operators' entries only: what deleting a user checks, without the engine's.
            models.Index(fields=["created_by"], condition=Q(created_by__isnull=False), name="ledger_created_by"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(available_delta=0) | ~Q(held_delta=0), name="ledger_entry_moves_something"
            ),
            models.CheckConstraint(
                condition=Q(available_after__gte=0) & Q(held_after__gte=0), name="ledger_after_non_negative"
            ),
        ]

    def __str__(self):
        return f"{self.kind} {self.user} {self.asset_id} {self.available_delta:+}/{self.held_delta:+}"


class Session(AbstractBaseSession):
    """A web session that knows whose it is, where it came from and when it was last used.

    Django's database session with three more columns, written by the session engine
    (accounts.session_store) on every save, so the account's Sessions page can list a
    trader's sign-ins and end them. Deleting a row signs that browser out.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="web_sessions"
    )
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField()
    last_seen = models.DateTimeField()

    @classmethod
    def get_session_store_class(cls):
        from .session_store import SessionStore

        return SessionStore

    class Meta(AbstractBaseSession.Meta):
        indexes = [
            # The Sessions page: a user's live sessions, most recently used first.
            models.Index(fields=["user", "-last_seen"], name="session_user_last_seen"),
        ]


class ApiKeyManager(BaseAPIKeyManager):
    """djangorestframework-api-key's manager, with an integer id of our own.

    The library stores "<prefix>.<hash>" as the primary key; ours is a plain number, so the
    id an integrator sees in GET /api/keys and sends in DELETE /api/keys/{id} says nothing
    about the secret's hash.
    """

    def assign_key(self, obj) -> str:
        key, prefix, hashed_key = self.key_generator.generate()
        obj.prefix, obj.hashed_key = prefix, hashed_key
        return key

    def get_usable_keys(self):
        # The owner comes along in the same query: a key's request needs nothing else.
        return self.filter(revoked=False, user__is_active=True).select_related("user")


class ApiKey(AbstractAPIKey):
    """A program's credential for one user: `<prefix>.<secret>`, kept only as a SHA-512 hash.

    The secret is high-entropy (32 random characters), so a fast hash is as safe as a slow
    one and costs microseconds per request (the library's reasoning). Made, listed and
    revoked by `accounts.keys`; revoking cannot be undone.
    """

    class Scope(models.TextChoices):
        READ = "read"  # every GET of the owner's data
        TRADE = "trade"  # also place, amend and cancel orders

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    # A list of Scope values, always including "read".
    scopes = models.JSONField(default=list)
    # CIDR networks ("203.0.113.0/24", "2001:db8::1/128") the key may be used from; empty: anywhere.
    allowed_ips = models.JSONField(default=list, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyManager()

    class Meta(AbstractAPIKey.Meta):
        ordering = ["-created"]
        indexes = [
            # GET /api/keys and the account page: a user's keys, newest first.
            models.Index(fields=["user", "-created"], name="apikey_user_recent"),
        ]

    @property
    def can_trade(self) -> bool:
        return self.Scope.TRADE in self.scopes

    @property
    def throttle_ident(self) -> str:
        """What the API's throttles count this key's requests against (quantumtrades.core.api)."""
        return f"key{self.pk}"


class ApiLogin(models.Model):
    """One login on the API: a family of tokens, from `POST /api/auth/login` to its end.

    Every refresh token and access token of the login carries its id (the `fam` claim;
    accounts.tokens). Refreshing rotates the pair within the family. Ending the login
    (logout, signing out everywhere, a password change or reset, or a refresh token used
    twice) refuses every token of the family: its refresh tokens at once, its access
    tokens within seconds (accounts.authentication).
    """

    class EndReason(models.TextChoices):
        LOGOUT = "logout"
        SIGN_OUT = "sign_out"  # signed out everywhere, a password changed or reset
        REUSE = "reuse"  # a rotated refresh token came back: someone else holds one

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Indexed by the index in Meta.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_logins", db_index=False
    )
    created_at = models.DateTimeField(default=timezone.now)
    # When its newest refresh token expires: the login cannot outlive it.
    expires_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=16, choices=EndReason.choices, blank=True, default="")

    class Meta:
        indexes = [
            # A user's live logins (ending them all: ended_at IS NULL) and the ones ended
            # lately (read with the user by accounts.authentication every few seconds).
            models.Index(fields=["user", "ended_at"], name="apilogin_user_ended"),
        ]

    def __str__(self):
        return f"{self.user} API login {self.pk.hex[:8]}"


class OperatorAction(models.Model):
    """What an operator (or the venue itself) did, to whom or to which market, and why.

    Append-only, like the ledger: written in the same transaction as the action it
    records, never changed afterwards. `market` is the symbol, not a foreign key:
    accounts sits below marketdata.
    """

    class Kind(models.TextChoices):
        TRADING_DISABLED = "trading_disabled", "Trading disabled (kill switch)"
        TRADING_ENABLED = "trading_enabled", "Trading enabled"
        MARKET_HALTED = "market_halted", "Market halted"
        MARKET_RESUMED = "market_resumed", "Market resumed"
        MARKET_RULES_CHANGED = "market_rules_changed", "Market rules changed"
        ORDER_CANCELLED = "order_cancelled", "Order cancelled"
        BALANCE_ADJUSTED = "balance_adjusted", "Balance adjusted"
        USER_LIMITS_CHANGED = "user_limits_changed", "User limits changed"
        SIGNED_OUT = "signed_out", "Signed out everywhere"
        API_KEY_REVOKED = "api_key_revoked", "API key revoked"
        RECONCILE_RUN = "reconcile_run", "Reconcile run"

    # Empty when the venue acted by itself (a circuit breaker, the dead man's switch).
    operator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    kind = models.CharField(max_length=24, choices=Kind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="operator_actions",
        help_text="The user the action was about, if any.",
    )
    market = models.CharField(max_length=24, blank=True, default="", help_text="The market's symbol, if any.")
    reason = models.TextField(blank=True, default="")
    # What changed: {"field": [old, new], ...}, the orders cancelled, and so on.
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        who = self.operator.username if self.operator_id else "venue"
        about = self.market or (self.user.username if self.user_id else "")
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {who}: {self.get_kind_display()} {about}".rstrip()
