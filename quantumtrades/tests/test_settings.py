"""Settings read every documented environment variable.

Settings are evaluated once, at import, so each case imports them afresh in a child
process whose environment holds only what the case sets.
"""

import json
import os
import secrets
import subprocess
import sys

import pytest
from django.conf import settings

BASE_DIR = settings.BASE_DIR

# Runs in the child: imports the settings and prints the values under test as JSON.
PRINT_SETTINGS = """
import json, os
os.environ["DJANGO_SETTINGS_MODULE"] = "quantumtrades.settings"
from django.conf import settings
print(json.dumps({
    "DATABASES": settings.DATABASES,
    "CHANNEL_LAYERS": settings.CHANNEL_LAYERS,
    "CACHES": settings.CACHES,
    "SECRET_KEY": settings.SECRET_KEY,
    "DEBUG": settings.DEBUG,
    "ALLOWED_HOSTS": settings.ALLOWED_HOSTS,
    "JWT_ALGORITHM": settings.SIMPLE_JWT["ALGORITHM"],
    "JWT_SIGNING_KEY": settings.SIMPLE_JWT["SIGNING_KEY"],
    "ACCESS_TOKEN_SECONDS": settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds(),
    "CORS_ALLOWED_ORIGINS": settings.CORS_ALLOWED_ORIGINS,
    "SITE_URL": settings.SITE_URL,
    "DATABASE_ROUTERS": settings.DATABASE_ROUTERS,
    "REPLICA_MAX_LAG_SECONDS": settings.REPLICA_MAX_LAG_SECONDS,
    "LOG_FORMATTER": settings.LOGGING["handlers"]["console"]["formatter"],
    "PAPER_GRANT": settings.PAPER_GRANT,
}, default=str))
"""


@pytest.fixture(autouse=True)
def no_dotenv_file():
    # settings.py reads BASE_DIR/.env into the environment, which would leak into every case.
    if (BASE_DIR / ".env").exists():
        pytest.skip("a .env file in the project folder overrides the controlled environment")


def run_python(args, **variables):
    """Run the project's Python in BASE_DIR with only PATH, HOME and `variables` set."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"), **variables}
    return subprocess.run([sys.executable, *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120)


def settings_with(**variables):
    """The settings that the environment `variables` produce, as a dict of plain values."""
    result = run_python(["-c", PRINT_SETTINGS], **variables)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# --- Database --------------------------------------------------------------------------


def test_unset_database_url_gives_sqlite_with_immediate_transactions_and_a_timeout():
    database = settings_with()["DATABASES"]["default"]

    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert database["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert database["OPTIONS"]["timeout"] > 0


def test_sqlalchemy_style_database_url_gives_postgresql():
    database = settings_with(DATABASE_URL="postgresql+psycopg2://u:p@h:5433/dbn")["DATABASES"]["default"]

    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert (database["USER"], database["PASSWORD"], database["HOST"]) == ("u", "p", "h")
    assert str(database["PORT"]) == "5433"
    assert database["NAME"] == "dbn"
    assert database["CONN_HEALTH_CHECKS"] is False  # a failure tests the pool instead (quantumtrades.core.unavailable)


def test_plain_postgres_database_url_gives_postgresql():
    database = settings_with(DATABASE_URL="postgres://u:p@h:5433/dbn")["DATABASES"]["default"]

    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert (database["USER"], database["PASSWORD"], database["HOST"]) == ("u", "p", "h")
    assert str(database["PORT"]) == "5433"
    assert database["NAME"] == "dbn"
    assert database["CONN_HEALTH_CHECKS"] is False  # a failure tests the pool instead (quantumtrades.core.unavailable)


def test_postgres_parts_are_used_when_database_url_is_unset():
    database = settings_with(
        POSTGRES_HOST="h", POSTGRES_USER="u", POSTGRES_PASSWORD="p", POSTGRES_DB="dbn", POSTGRES_PORT="5434"
    )["DATABASES"]["default"]

    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert (database["USER"], database["PASSWORD"], database["HOST"]) == ("u", "p", "h")
    assert str(database["PORT"]) == "5434"
    assert database["NAME"] == "dbn"


def test_postgres_password_with_url_characters_survives():
    database = settings_with(POSTGRES_HOST="h", POSTGRES_USER="u", POSTGRES_PASSWORD="p@ss/w:rd#1")["DATABASES"][
        "default"
    ]

    assert (database["USER"], database["PASSWORD"], database["HOST"]) == ("u", "p@ss/w:rd#1", "h")


def test_database_url_wins_over_postgres_parts():
    database = settings_with(DATABASE_URL="postgresql://u:p@h:5433/dbn", POSTGRES_HOST="other")["DATABASES"]["default"]

    assert database["HOST"] == "h"


def test_non_postgres_database_url_is_refused():
    result = run_python(["-c", PRINT_SETTINGS], DATABASE_URL="mysql://u:p@h:3306/dbn")

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr


def test_replica_urls_give_standby_aliases_that_tests_never_create():
    values = settings_with(
        DATABASE_URL="postgresql://qt@primary:5432/qt",
        DATABASE_REPLICA_URLS="postgresql://qt@standby-a:5432/qt,postgres://qt@standby-b:5433/qt",
        REPLICA_MAX_LAG_SECONDS="2.5",
    )

    databases = values["DATABASES"]
    assert list(databases) == ["default", "replica_1", "replica_2"]
    assert (databases["replica_1"]["HOST"], databases["replica_2"]["PORT"]) == ("standby-a", 5433)
    assert databases["replica_2"]["TEST"] == {"MIRROR": "default"}
    assert values["DATABASE_ROUTERS"] == ["quantumtrades.core.replicas.PrimaryRouter"]
    assert values["REPLICA_MAX_LAG_SECONDS"] == 2.5
    # A standby of SQLite is no standby.
    result = run_python(["-c", PRINT_SETTINGS], DATABASE_REPLICA_URLS="postgresql://qt@standby-a:5432/qt")
    assert result.returncode != 0 and "DATABASE_REPLICA_URLS needs a PostgreSQL DATABASE_URL" in result.stderr


def test_log_format_is_plain_or_json():
    assert settings_with()["LOG_FORMATTER"] == "plain"
    assert settings_with(LOG_FORMAT="json")["LOG_FORMATTER"] == "json"
    result = run_python(["-c", PRINT_SETTINGS], LOG_FORMAT="xml")
    assert result.returncode != 0 and "LOG_FORMAT is plain or json" in result.stderr


# --- Channel layer and cache -----------------------------------------------------------


def test_redis_url_gives_the_redis_pubsub_layer_and_the_redis_cache():
    url = "redis://r.example:6380/2"
    values = settings_with(REDIS_URL=url)

    layer = values["CHANNEL_LAYERS"]["default"]
    assert layer["BACKEND"] == "channels_redis.pubsub.RedisPubSubChannelLayer"
    assert layer["CONFIG"]["hosts"] == [url]
    cache = values["CACHES"]["default"]
    assert cache["BACKEND"] == "quantumtrades.core.cache.ResilientRedisCache"
    assert cache["LOCATION"] == url


def test_unset_redis_url_gives_the_in_memory_layer_and_the_local_memory_cache():
    values = settings_with()

    assert values["CHANNEL_LAYERS"]["default"]["BACKEND"] == "channels.layers.InMemoryChannelLayer"
    assert values["CACHES"]["default"]["BACKEND"] == "django.core.cache.backends.locmem.LocMemCache"


# --- Secrets and debug -----------------------------------------------------------------


def test_django_secret_key_is_the_secret_key():
    values = settings_with(DJANGO_SECRET_KEY="django-secret-from-env", DEBUG="0")

    assert values["SECRET_KEY"] == "django-secret-from-env"
    assert values["DEBUG"] is False


def test_jwt_secret_is_the_fallback_secret_key_and_signs_tokens():
    values = settings_with(JWT_SECRET="jwt-secret-from-env", DEBUG="0")

    assert values["SECRET_KEY"] == "jwt-secret-from-env"
    assert values["JWT_SIGNING_KEY"] == "jwt-secret-from-env"


def test_jwt_secret_signs_tokens_beside_a_django_secret_key():
    values = settings_with(DJANGO_SECRET_KEY="django-secret-from-env", JWT_SECRET="jwt-secret-from-env")

    assert values["SECRET_KEY"] == "django-secret-from-env"
    assert values["JWT_SIGNING_KEY"] == "jwt-secret-from-env"


def test_postgresql_runs_prepared_statements_with_generic_plans():
    options = settings_with(DATABASE_URL="postgres://u:p@h:5433/dbn")["DATABASES"]["default"]["OPTIONS"]

    # orders/tests/test_book_reads.py holds every command to the rows it needs under them.
    assert options["options"] == "-c plan_cache_mode=force_generic_plan"
    # The engine prepares them (quantumtrades/core/sql.py); psycopg prepares nothing, so it
    # never deallocates the engine's after a rollback.
    assert "prepare_threshold" not in options


def test_paper_grant_is_read_as_the_readme_writes_it():
    assert settings_with(PAPER_GRANT="USD=2500,QTX=10.5")["PAPER_GRANT"] == {"USD": "2500", "QTX": "10.5"}
    assert settings_with()["PAPER_GRANT"] == {"USD": "100000", "QTX": "1000", "BTC": "2", "ETH": "20"}


@pytest.mark.parametrize("grant", ["USD=100;QTX=1000", "USD=lots", "USD=-5", "USD=NaN"])
def test_a_paper_grant_that_is_not_amounts_refuses_to_start(grant):
    # Once, a grant that was not amounts started the server and failed every registration.
    result = run_python(["-c", PRINT_SETTINGS], PAPER_GRANT=grant)

    assert result.returncode != 0
    assert "ImproperlyConfigured: PAPER_GRANT" in result.stderr


def test_debug_off_without_a_secret_key_refuses_to_start():
    result = run_python(["-c", PRINT_SETTINGS], DEBUG="0")

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr


def test_allowed_hosts_is_a_comma_separated_list():
    values = settings_with(ALLOWED_HOSTS="trade.example.com,api.example.com")

    assert values["ALLOWED_HOSTS"] == ["trade.example.com", "api.example.com"]


# --- The site's address -----------------------------------------------------------------


def test_site_url_defaults_to_the_development_server():
    assert settings_with()["SITE_URL"] == "http://127.0.0.1:8000"


def test_site_url_is_read_without_a_trailing_slash():
    assert settings_with(SITE_URL="https://trade.example.com/")["SITE_URL"] == "https://trade.example.com"


def test_in_production_site_url_defaults_to_the_first_allowed_host_over_https():
    values = settings_with(DEBUG="0", DJANGO_SECRET_KEY="x" * 50, ALLOWED_HOSTS="trade.example.com,web")

    assert values["SITE_URL"] == "https://trade.example.com"


@pytest.mark.parametrize(
    "variables",
    [
        {"ALLOWED_HOSTS": "*"},
        {"ALLOWED_HOSTS": ".example.com"},
        {"SITE_URL": "https://trade.example.com/app"},
        {"SITE_URL": "ftp://trade.example.com"},
        {"SITE_URL": "trade.example.com"},
    ],
    ids=["any host", "a host pattern", "a path", "not http", "no scheme"],
)
def test_a_site_url_that_cannot_be_told_refuses_to_start(variables):
    result = run_python(["-c", PRINT_SETTINGS], DEBUG="0", DJANGO_SECRET_KEY="x" * 50, **variables)

    assert result.returncode != 0
    assert "ImproperlyConfigured: " in result.stderr and "SITE_URL" in result.stderr.split("ImproperlyConfigured: ")[1]


# --- REST API --------------------------------------------------------------------------


def test_jwt_algo_sets_the_token_algorithm():
    assert settings_with(JWT_ALGO="HS512")["JWT_ALGORITHM"] == "HS512"


def test_access_token_expire_minutes_sets_the_access_token_lifetime():
    assert settings_with(ACCESS_TOKEN_EXPIRE_MINUTES="15")["ACCESS_TOKEN_SECONDS"] == 15 * 60


def test_access_token_lifetime_defaults_to_sixty_minutes():
    assert settings_with()["ACCESS_TOKEN_SECONDS"] == 60 * 60


def test_backend_cors_origins_is_a_comma_separated_list():
    values = settings_with(BACKEND_CORS_ORIGINS="http://localhost:3000,https://app.example.com")

    assert values["CORS_ALLOWED_ORIGINS"] == ["http://localhost:3000", "https://app.example.com"]


def test_empty_backend_cors_origins_allows_no_origin():
    # docker-compose.yml passes BACKEND_CORS_ORIGINS through as an empty string by default.
    assert settings_with(BACKEND_CORS_ORIGINS="")["CORS_ALLOWED_ORIGINS"] == []


# --- Deployment ------------------------------------------------------------------------


def test_production_settings_pass_the_deploy_checks():
    result = run_python(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="trade.example.com",
    )

    assert result.returncode == 0, result.stdout + result.stderr
