"""The staff's roles: what each group of the console may do (README, "The operators' console").

- "support" sees everything in the admin (every model's view permission) and changes
  nothing: they answer traders with the facts in front of them.
- "operators" see everything too, and act: they change traders' limits and markets' rules,
  and take the operators' actions, each behind a permission of its own.

The groups are made by a data migration (orders 0008) and kept complete after every
`migrate` (`staff_groups_sync`, on post_migrate), so a model added later is visible to
both. A superuser has every permission. Sync only adds: a permission an operator of the
venue removed from a group by hand stays removed until it is added back here.
"""

SUPPORT = "support"
OPERATORS = "operators"

# app_label.codename of the actions and changes only operators make.
OPERATOR_PERMISSIONS = (
    "accounts.disable_trading",
    "accounts.sign_out_user",
    "accounts.adjust_balance",
    "accounts.change_user",
    "accounts.change_apikey",
    "marketdata.halt_market",
    "marketdata.change_market",
    "orders.cancel_order",
    "orders.run_reconcile",
)


def staff_groups_sync(apps=None) -> None:
    """Create the two groups if missing and give them their permissions (adds only).
    `apps` is a migration's app registry, or None for the live one."""
    if apps is None:
        from django.apps import apps
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    views = list(Permission.objects.filter(codename__startswith="view_"))
    actions = []
    for name in OPERATOR_PERMISSIONS:
        app_label, codename = name.split(".")
        actions += list(Permission.objects.filter(content_type__app_label=app_label, codename=codename))
    support, _ = Group.objects.get_or_create(name=SUPPORT)
    support.permissions.add(*views)
    operators, _ = Group.objects.get_or_create(name=OPERATORS)
    operators.permissions.add(*views, *actions)


def role_of(user) -> str:
    """What the console calls the user's standing: superuser, operator, support, or staff."""
    if user.is_superuser:
        return "superuser"
    names = {group.name for group in user.groups.all()}
    if OPERATORS in names:
        return "operator"
    if SUPPORT in names:
        return "support"
    return "staff"
