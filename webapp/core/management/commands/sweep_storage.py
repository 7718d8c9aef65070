from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand

from webapp.core.sweep import storage_sweep


class Command(BaseCommand):
    help = "Remove what killed job attempts left in storage (objects no row refers to, unfinished uploads)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--grace", type=int, default=settings.SWEEP_GRACE_SECONDS,
                            help="keep anything younger than this many seconds (a publish may be in flight)")

    def handle(self, *args, grace: int, **options) -> None:
        swept = storage_sweep(grace=timedelta(seconds=grace))
        self.stdout.write(" ".join(f"{name}={count}" for name, count in swept.items()))
