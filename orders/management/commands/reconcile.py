from django.core.management.base import BaseCommand, CommandError

from orders.selectors import reconcile


class Command(BaseCommand):
    help = "Check the money invariants (docs/ARCHITECTURE.md, 'Money'); exit non-zero on any breach."

    def handle(self, *args, **options):
        breaches = reconcile()
        for breach in breaches:
            self.stderr.write(str(breach))
        if breaches:
            raise CommandError(f"{len(breaches)} breaches found.")
        self.stdout.write("Reconciled: balances match the ledger, supply, holds and books.")
