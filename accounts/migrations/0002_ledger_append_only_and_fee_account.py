from django.conf import settings
from django.db import migrations

# The ledger is the audit trail of every balance: once written, an entry never changes.
# A trigger makes the database itself refuse UPDATE (and DELETE on PostgreSQL, where the
# test runner's flush uses TRUNCATE, which row triggers do not see).
POSTGRES_SQL = """
CREATE FUNCTION accounts_ledger_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'accounts_ledgerentry is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER accounts_ledger_append_only
    BEFORE UPDATE OR DELETE ON accounts_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION accounts_ledger_append_only();
"""
POSTGRES_REVERSE_SQL = """
DROP TRIGGER accounts_ledger_append_only ON accounts_ledgerentry;
DROP FUNCTION accounts_ledger_append_only();
"""
SQLITE_SQL = """
CREATE TRIGGER accounts_ledger_append_only BEFORE UPDATE ON accounts_ledgerentry
BEGIN SELECT RAISE(ABORT, 'accounts_ledgerentry is append-only'); END;
"""
SQLITE_REVERSE_SQL = "DROP TRIGGER accounts_ledger_append_only;"


def add_trigger(apps, schema_editor):
    sql = POSTGRES_SQL if schema_editor.connection.vendor == "postgresql" else SQLITE_SQL
    schema_editor.execute(sql)


def remove_trigger(apps, schema_editor):
    sql = POSTGRES_REVERSE_SQL if schema_editor.connection.vendor == "postgresql" else SQLITE_REVERSE_SQL
    schema_editor.execute(sql)


def create_fee_account(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    User.objects.get_or_create(
        username=settings.FEE_ACCOUNT_USERNAME,
        defaults={"is_active": False, "password": "!", "first_name": "Trading fees"},
    )


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [
        migrations.RunPython(add_trigger, remove_trigger),
        migrations.RunPython(create_fee_account, migrations.RunPython.noop),
    ]
