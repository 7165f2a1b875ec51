"""The staff's groups: "support" sees everything and changes nothing, "operators" act
(accounts.roles). Permissions are made by Django after migrating, so they are made here
first for the models that exist at this point; `staff_groups_sync` runs again after
every `migrate` for the models added since (orders.apps)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def staff_groups(apps, schema_editor):
    from accounts.roles import staff_groups_sync

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    staff_groups_sync(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("accounts", "0010_operator_console_permissions"),
        ("marketdata", "0008_market_halt_permission"),
        ("orders", "0008_reconcile_runs_and_cancel_permission"),
    ]

    operations = [migrations.RunPython(staff_groups, migrations.RunPython.noop)]
