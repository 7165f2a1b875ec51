"""QuantumTrades settings: one module, read from the environment.

Unset variables give the embedded defaults (SQLite in the project folder, the in-memory
channel layer, a local-memory cache), so `make run` works on a fresh machine. Setting
DATABASE_URL and REDIS_URL switches to PostgreSQL and Redis. Every variable is listed in
the README's environment table and in `.env.example`.
"""

import os
import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import quote, urlsplit

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=True)

# JWT_SECRET is the original specification's name for the signing secret; either works.
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="") or env.str("JWT_SECRET", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("Set DJANGO_SECRET_KEY (or JWT_SECRET) when DEBUG is off.")
    SECRET_KEY = "insecure-development-key-only-for-debug-runs-change-me-0123456789"

# Old secret keys still accepted for what they signed (web sessions, password-reset links)
# while a new DJANGO_SECRET_KEY takes over (docs/OPERATIONS.md, "Key rotation").
SECRET_KEY_FALLBACKS = env.list("DJANGO_SECRET_KEY_FALLBACKS", default=[])

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])

INSTALLED_APPS = [
    "daphne",
    # django.contrib.admin behind the site's login, two-factor included (accounts.admin_site).
    "accounts.apps.AdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "corsheaders",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    # API keys for programs: the abstract model and hashing; the key model is accounts.ApiKey.
    "rest_framework_api_key",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "accounts",
    "marketdata",
    "orders",
    # The FIX 4.4 gateway (manage.py fix_gateway): a door above orders.
    "fix",
]

MIDDLEWARE = [
    # Every request counted and timed by its route (quantumtrades/core/metrics.py); it
    # answers nothing itself, so the request id's middleware still sees every answer.
    "quantumtrades.core.metrics.HttpMetricsMiddleware",
    # The request's id (X-Request-ID, taken or made): in its log lines and echoed in the
    # answer, a redirect's included, so it comes first.
    "quantumtrades.core.logs.RequestIdMiddleware",
    # A signed-in user's public reads stay on the primary for a moment after they wrote
    # (quantumtrades/core/replicas.py); outermost, so it sees the user a view authenticated.
    "quantumtrades.core.replicas.ReadYourWritesMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on every response (CONTENT_SECURITY_POLICY below); the API's
    # JSON answers get one that allows nothing.
    "quantumtrades.core.content_security.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    # The session, its user, one-time codes, messages and htmx: Django's and the packages'
    # own, which API requests carrying a token or an API key pass over
    # (quantumtrades/core/page_middleware.py). CSRF's stays whole, for every request.
    "quantumtrades.core.page_middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "quantumtrades.core.page_middleware.AuthenticationMiddleware",
    # Who passed a one-time code (django-otp), and staff who must have (OTP_REQUIRED_FOR_STAFF).
    "quantumtrades.core.page_middleware.OTPMiddleware",
    "accounts.middleware.StaffTwoFactorMiddleware",
    # The address and browser each session is saved with (the account's Sessions page).
    "accounts.middleware.SessionClientMiddleware",
    "quantumtrades.core.page_middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "quantumtrades.core.page_middleware.HtmxMiddleware",
    # A lost database answers 503, not 500 (README, "When Redis or PostgreSQL goes away").
    "quantumtrades.core.unavailable.DatabaseUnavailableMiddleware",
    # X-RateLimit-* on every API answer a throttle counted (docs/API.md, "Rate limits").
    "quantumtrades.core.throttles.RateLimitHeaders",
]

# The largest request body any route takes: forms and the admin's posts are a few KiB, API
# bodies at most 64 KiB (quantumtrades/core/api.py). Past it the ASGI handler answers 413
# without reading the body (quantumtrades/core/handlers.py); nginx refuses past 1 MiB too.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

# Requests one server process works on at once, each in one of as many kept threads
# (quantumtrades/core/handlers.py); more requests wait their turn in the event loop.
REQUEST_THREADS = env.int("REQUEST_THREADS", default=4)

ROOT_URLCONF = "quantumtrades.urls"
ASGI_APPLICATION = "quantumtrades.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


# --- Database -------------------------------------------------------------------------


def database_config(url):
    """Parse DATABASE_URL; None gives the embedded SQLite database.

    The original specification wrote SQLAlchemy-style URLs (`postgresql+psycopg2://...`);
    the driver suffix means nothing to Django, which always speaks psycopg 3, so it is
    dropped before parsing.
    """
    if not url:
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": BASE_DIR / "db.sqlite3",
            # Writers take the lock when their transaction begins (IMMEDIATE) and wait up to
            # the timeout for it, so concurrent commands queue instead of failing with
            # "database is locked" halfway through. WAL lets readers run beside the writer.
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
            },
            # A file, not shared-cache memory: threads in the concurrency tests need real
            # file locking, which honours the busy timeout.
            # One file per test process, so parallel runs never share one.
            "TEST": {"NAME": str(BASE_DIR / f".test-db-{os.getpid()}.sqlite3")},
        }
    url = re.sub(r"^(postgres(?:ql)?)\+\w+://", r"\1://", url)
    config = environ.Env.db_url_config(url)
    if config["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_URL must be a PostgreSQL URL (or unset for SQLite).")
    # Under ASGI, Django's persistent connections belong to whichever thread opened them;
    # psycopg's pool shares a few warm connections instead (Django's documented choice).
    config["CONN_MAX_AGE"] = 0
    # No round trip to test every connection the pool lends: one that died (a restarted
    # server) fails its request with a 503, and the pool then tests its idle connections
    # at once (quantumtrades.core.unavailable), so the next request gets a live one.
    config["CONN_HEALTH_CHECKS"] = False
    # The engine prepares its statements itself (quantumtrades/core/sql.py, `_Sender`), and
    # psycopg prepares none (Django opens its connections with prepare_threshold None, and
    # Django's own queries bind on the client), so psycopg never sends the DEALLOCATE ALL
    # that would drop the engine's after a rollback. They run with generic plans, planned
    # once per connection. Left to choose, PostgreSQL kept re-planning most of them at every
    # execution (a custom plan each time): 0.52 ms of planning per order, 0.29 ms with
    # generic plans. Every book read names its partial index's condition in literals, so
    # its generic plan uses that index; orders/tests/test_book_reads.py holds each command
    # to the rows it needs under generic plans (docs/BENCHMARKS.md, "Order entry near the
    # database's ceiling").
    config.setdefault("OPTIONS", {})["options"] = "-c plan_cache_mode=force_generic_plan"
    config["OPTIONS"]["pool"] = {
        "min_size": env.int("DB_POOL_MIN", default=2),
        "max_size": env.int("DB_POOL_MAX", default=20),
        # How long a request waits for a free connection before its 503 (docs/OPERATIONS.md).
        "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
    }
    return config


def postgres_url_from_parts():
    """The original specification's POSTGRES_* variables, used when DATABASE_URL is unset."""
    if not env.str("POSTGRES_HOST", default=""):
        return ""
    user = env.str("POSTGRES_USER", default="postgres")
    password = env.str("POSTGRES_PASSWORD", default="")
    host = env.str("POSTGRES_HOST")
    port = env.int("POSTGRES_PORT", default=5432)
    name = env.str("POSTGRES_DB", default=user)
    credentials = f"{quote(user, safe='')}:{quote(password, safe='')}" if password else quote(user, safe="")
    return f"postgresql://{credentials}@{host}:{port}/{quote(name, safe='')}"


DATABASE_URL = env.str("DATABASE_URL", default="") or postgres_url_from_parts()
DATABASES = {"default": database_config(DATABASE_URL)}


def replica_config(url):
    """A hot standby of DATABASE_URL's primary, for the reads that may lag a little."""
    if not DATABASE_URL or DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_REPLICA_URLS needs a PostgreSQL DATABASE_URL (the primary).")
    config = database_config(url)
    # A standby that is away must cost a public read a moment, not the pool's ten seconds:
    # its health check fails fast, and the reads go to the primary meanwhile.
    config["OPTIONS"]["connect_timeout"] = 2
    config["OPTIONS"]["pool"] = {**config["OPTIONS"]["pool"], "min_size": 1, "timeout": 2}
    # Tests never make a database for a standby: it reads the primary's test database.
    config["TEST"] = {"MIRROR": "default"}
    return config


# Read replicas (quantumtrades/core/replicas.py, docs/OPERATIONS.md "Read replicas"): public
# market data is read from these PostgreSQL hot standbys, aliases replica_1, replica_2, ...
for _number, _url in enumerate(env.list("DATABASE_REPLICA_URLS", default=[]), start=1):
    DATABASES[f"replica_{_number}"] = replica_config(_url)
# Everything that names no database, and every write, goes to the primary.
DATABASE_ROUTERS = ["quantumtrades.core.replicas.PrimaryRouter"]
# A standby whose replay lags more than this is skipped until it catches up.
REPLICA_MAX_LAG_SECONDS = env.float("REPLICA_MAX_LAG_SECONDS", default=5)
# After a write, a user's public reads stay on the primary this long: past the lag a
# standby may have and still be used (plus its health's age, a second), their write is there.
REPLICA_READ_YOUR_WRITES_SECONDS = env.float("REPLICA_READ_YOUR_WRITES_SECONDS", default=REPLICA_MAX_LAG_SECONDS + 2)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


# --- Channel layer and cache ----------------------------------------------------------

REDIS_URL = env.str("REDIS_URL", default="")
# Redis pub/sub channels ignore the database number in REDIS_URL, so two deployments (or
# test runs) sharing one Redis would hear each other's streams: the prefix keeps them
# apart. Processes that share a database must share it (the default does).
CHANNEL_LAYER_PREFIX = env.str(
    "CHANNEL_LAYER_PREFIX", default="qt." + Path(str(DATABASES["default"]["NAME"])).name + "."
)
# The live streams' Redis; the cache's by default (a separate one keeps pub/sub traffic apart).
CHANNEL_LAYER_REDIS_URL = env.str("CHANNEL_LAYER_REDIS_URL", default="") or REDIS_URL
if CHANNEL_LAYER_REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # The pub/sub layer: a group message is one PUBLISH that Redis hands to every
            # subscribed process; nothing is dropped for being over a queue's capacity.
            # The live streams hold one subscription per process (marketdata.streams), so
            # a change crosses Redis once per process, not once per socket.
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [CHANNEL_LAYER_REDIS_URL],
                "prefix": CHANNEL_LAYER_PREFIX,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
if REDIS_URL:
    CACHES = {
        "default": {
            # django-redis: one connection pool per process, and this process's memory
            # while Redis is down (quantumtrades/core/cache.py).
            "BACKEND": "quantumtrades.core.cache.ResilientRedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                # A Redis that has gone away must cost a request milliseconds, not seconds.
                "SOCKET_CONNECT_TIMEOUT": 0.25,
                "SOCKET_TIMEOUT": 0.5,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Live streams (quantumtrades.core.streams.options and marketdata.streams.options list every knob): the least time between two
# book updates of a market on /ws, between two renders of page fragments, and between two
# messages of a process's publisher.
STREAMS = {
    "BOOK_INTERVAL": env.float("STREAM_BOOK_INTERVAL_MS", default=20) / 1000,
    "PAGE_INTERVAL": env.float("STREAM_PAGE_INTERVAL_MS", default=100) / 1000,
    "PUBLISH_INTERVAL": env.float("STREAM_PUBLISH_INTERVAL_MS", default=20) / 1000,
}


# --- Auth -----------------------------------------------------------------------------

AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

# Every login (API, web page, admin) goes through the lockout: accounts/lockout.py.
AUTHENTICATION_BACKENDS = ["accounts.backends.LockoutModelBackend"]
# Market integrity (docs/API.md, "Market rules"): the open orders (resting and pending
# stops) one user may have, unless the admin sets their own limit.
MAX_OPEN_ORDERS = env.int("MAX_OPEN_ORDERS", default=200)
# A cancel-on-disconnect socket whose process stopped refreshing it for this long is
# presumed dead, and its orders are cancelled by any live process.
CANCEL_ON_DISCONNECT_SECONDS = env.int("CANCEL_ON_DISCONNECT_SECONDS", default=10)
# `reconcile` on a schedule (orders.console): one run per this many seconds across all
# server processes, its result on the admin's dashboard; 0 turns the schedule off.
RECONCILE_EVERY_SECONDS = env.int("RECONCILE_EVERY_SECONDS", default=3600)
# The venue's name in the operators' console (the admin's header and title).
VENUE_NAME = env.str("VENUE_NAME", default="QuantumTrades")
# Every server process runs the venue's timers (quantumtrades.core.scheduler); a process
# that should not (a benchmark's second server, say) sets SCHEDULER=0.
SCHEDULER_ENABLED = env.bool("SCHEDULER", default=True)

LOGIN_LOCKOUT_ATTEMPTS = env.int("LOGIN_LOCKOUT_ATTEMPTS", default=5)  # failures of one username from one address
LOGIN_LOCKOUT_IP_ATTEMPTS = env.int("LOGIN_LOCKOUT_IP_ATTEMPTS", default=50)  # failures per client address
LOGIN_LOCKOUT_WINDOW_MINUTES = env.int("LOGIN_LOCKOUT_WINDOW_MINUTES", default=15)
LOGIN_LOCKOUT_MINUTES = env.int("LOGIN_LOCKOUT_MINUTES", default=15)

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Sessions end after an hour without activity; every request renews the cookie.
SESSION_COOKIE_AGE = env.int("SESSION_IDLE_MINUTES", default=60) * 60
SESSION_SAVE_EVERY_REQUEST = True
# Django's database sessions that also know their user, address and last use (Sessions page).
SESSION_ENGINE = "accounts.session_store"

# Two-factor login (django-otp, TOTP): optional for traders; with this on, staff must use it
# (the admin included) and are sent to set it up before anything else.
OTP_REQUIRED_FOR_STAFF = env.bool("OTP_REQUIRED_FOR_STAFF", default=False)
OTP_TOTP_ISSUER = "QuantumTrades"
# Operators may remove a trader's lost device in the admin, but never read its secret.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

# Email (password reset): printed to the console unless EMAIL_HOST names an SMTP server.
EMAIL_HOST = env.str("EMAIL_HOST", default="")
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default="django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_PORT = env.int("EMAIL_PORT", default=587)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)  # implicit TLS, usually port 465
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=not EMAIL_USE_SSL)  # STARTTLS
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="QuantumTrades <no-reply@localhost>")
# A reset link works for this long, and once.
PASSWORD_RESET_TIMEOUT = env.int("PASSWORD_RESET_MINUTES", default=60) * 60


def site_url(url: str) -> str:
    """SITE_URL as "scheme://host[:port]": where the site is, for links that leave it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise ImproperlyConfigured(f"SITE_URL must be http(s)://host[:port], not {url!r}.")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ImproperlyConfigured(f"SITE_URL is the site's root, with no path, query or fragment: {url!r}.")
    return f"{parts.scheme}://{parts.netloc}"


def default_site_url() -> str:
    """Development serves http://127.0.0.1:8000; in production the first ALLOWED_HOSTS name,
    over HTTPS, when it is one plain name (never a pattern such as "*" or ".example.com")."""
    if DEBUG:
        return "http://127.0.0.1:8000"
    host = ALLOWED_HOSTS[0] if ALLOWED_HOSTS else ""
    if not host or host == "*" or host.startswith(".") or "*" in host:
        raise ImproperlyConfigured("Set SITE_URL (e.g. https://trade.example.com) when DEBUG is off.")
    return f"https://{host}"


# The site's address as people reach it. Links in email (the password reset's) are built
# from it, never from a request's Host header, which the client writes.
SITE_URL = site_url(env.str("SITE_URL", default="") or default_site_url())


def paper_grant(value: dict) -> dict:
    """{asset code: amount}, each amount a non-negative decimal: a bad one stops the process
    at start, not every registration with a 500."""
    for code, amount in value.items():
        try:
            valid = Decimal(amount).is_finite() and Decimal(amount) >= 0
        except (InvalidOperation, TypeError):
            valid = False
        if not valid:
            raise ImproperlyConfigured(f"PAPER_GRANT: {code}={amount!r} is not an amount (USD=100000,QTX=1000).")
    return value


# Paper-trading grant deposited for every new user, as {asset code: amount}, written
# USD=100000,QTX=1000 (django-environ's dict with string values: no value cast, which would
# make it split on ";" instead).
PAPER_GRANT = paper_grant(env.dict("PAPER_GRANT", default={"USD": "100000", "QTX": "1000", "BTC": "2", "ETH": "20"}))
# The system user that receives trading fees.
FEE_ACCOUNT_USERNAME = "fees"


# --- REST API -------------------------------------------------------------------------

JWT_ALGO = env.str("JWT_ALGO", default="HS256")
ACCESS_TOKEN_EXPIRE_MINUTES = env.int("ACCESS_TOKEN_EXPIRE_MINUTES", default=60)
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=ACCESS_TOKEN_EXPIRE_MINUTES),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("REFRESH_TOKEN_EXPIRE_DAYS", default=7)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "ALGORITHM": JWT_ALGO,
    "SIGNING_KEY": env.str("JWT_SECRET", default="") or SECRET_KEY,
    "UPDATE_LAST_LOGIN": False,
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.JWTAuthentication",
        # Programs: "Authorization: Api-Key <key>", limited by the key's scopes (ApiKeyScope).
        "accounts.authentication.ApiKeyAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "accounts.authentication.ApiKeyScope",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # Numbers arrive as Decimal, never float; NaN, Infinity and exponents are refused by name.
    "DEFAULT_PARSER_CLASSES": ["quantumtrades.core.api.StrictJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "quantumtrades.core.api_schema.ApiAutoSchema",
    "EXCEPTION_HANDLER": "quantumtrades.core.api.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "quantumtrades.core.api.ApiPagination",
    "PAGE_SIZE": 50,
    # Counted in the default cache: Redis when REDIS_URL is set, shared by every process.
    "DEFAULT_THROTTLE_CLASSES": ["quantumtrades.core.throttles.ApiRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("THROTTLE_ANON", default="600/minute"),
        "user": env.str("THROTTLE_USER", default="6000/minute"),
        "orders": env.str("THROTTLE_ORDERS", default="3000/minute"),
        "auth": env.str("THROTTLE_AUTH", default="60/minute"),
        # Password-reset emails (the web's reset form): per address asked for, and per client.
        "reset_email": env.str("THROTTLE_RESET_EMAIL", default="5/hour"),
        "reset_client": env.str("THROTTLE_RESET_CLIENT", default="20/hour"),
    },
    # Proxies in front of the server that append to X-Forwarded-For (0: use the peer address).
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
    # Decimals travel as strings so that no client parses money into a float.
    "COERCE_DECIMAL_TO_STRING": True,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "QuantumTrades API",
    "DESCRIPTION": (
        "Orders, market data and balances of the QuantumTrades exchange. Authenticate with "
        "POST /api/auth/login and send the access token as 'Authorization: Bearer <token>', "
        "or make an API key (POST /api/keys) and send it as 'Authorization: Api-Key <key>'. "
        "Decimals travel as strings. Every error has the shape "
        '{"error": {"code": "...", "message": "...", "field": "..." | null}}.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its docs are public, whatever token comes along.
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    # Swagger UI's assets come from the installed sidecar package, not from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "SideEnum": "marketdata.models.Side",
        "TimeInForceEnum": "orders.models.TimeInForce",
        # A bracket's entry is a limit order that may not be GTD.
        "EntryTimeInForceEnum": ["GTC", "IOC", "FOK"],
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "quantumtrades.core.api_schema.schema_strict_requests",
    ],
}

CORS_ALLOWED_ORIGINS = env.list("BACKEND_CORS_ORIGINS", default=[])
CORS_URLS_REGEX = r"^/api/.*$"
# Browser clients may read their rate limits, when to retry a throttled request, and the
# request's id.
CORS_EXPOSE_HEADERS = ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After", "X-Request-ID"]


# --- Security -------------------------------------------------------------------------
# Secure by default whenever DEBUG is off; each can be switched off for plain-HTTP setups
# such as docker compose on localhost.

SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
# Load balancers probe health, and Prometheus scrapes each process, over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SESSION_COOKIE_HTTPONLY = True

# Content-Security-Policy (django-csp): nothing runs or styles a page but the site's own
# files. No inline script or style, no eval: the pages keep their behaviour in static/js,
# htmx is told to inject and evaluate nothing (base.html), fragments carry data attributes
# instead of style attributes. The admin (Django 5.2 has no inline script or style) lives
# under the same policy; Swagger UI relaxes it for its own page only (api_urls).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],  # the favicon is a data: URL
        "font-src": [SELF],
        # htmx's requests and the pages' sockets: same origin ('self' covers ws: and wss:).
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}


# --- Metrics (docs/ARCHITECTURE.md, "Metrics") ----------------------------------------

# Prometheus metrics of each process: `/metrics` on the web servers, to these addresses
# (addresses or CIDR networks; the peer's own address, never X-Forwarded-For) or with
# `Authorization: Bearer <METRICS_TOKEN>`. Anyone else gets a 404.
METRICS_ENABLED = env.bool("METRICS_ENABLED", default=True)
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=["127.0.0.0/8", "::1"])
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# The FIX gateway and the market simulator serve them on a port of their own when set.
METRICS_PORT = env.int("METRICS_PORT", default=0)
METRICS_ADDR = env.str("METRICS_ADDR", default="0.0.0.0")

# --- Static files, i18n, logging ------------------------------------------------------

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Serve straight from the app folders when collectstatic has not run (development, tests).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# LOG_FORMAT=json writes one JSON object per line (time, level, logger, message, and the
# request_id, user, order and market when known); plain text otherwise. Either way each
# record carries the id of the request or socket message it was written for
# (quantumtrades/core/logs.py, docs/OPERATIONS.md "Logs").
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT is plain or json, not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "quantumtrades.core.logs.LogContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "quantumtrades.core.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # One line per engine command at DEBUG (LOG_LEVEL_ENGINE=DEBUG turns them on).
        "orders.services": {"level": env.str("LOG_LEVEL_ENGINE", default="") or None},
    },
}
