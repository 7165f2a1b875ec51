from django.core.management.base import BaseCommand, CommandError

from orders.console import reconcile_run
from orders.models import ReconcileRun


class Command(BaseCommand):
    help = (
        "Check the money invariants (docs/ARCHITECTURE.md, 'Money'); exit non-zero on any breach. "
        "The result is kept and shown on the admin's dashboard."
    )

    def handle(self, *args, **options):
        run = reconcile_run(trigger=ReconcileRun.Trigger.COMMAND)
        for breach in run.found:
            self.stderr.write(str(breach))
        if run.breaches:
            raise CommandError(f"{run.breaches} breaches found.")
        self.stdout.write("Reconciled: balances match the ledger, supply, holds and books.")
