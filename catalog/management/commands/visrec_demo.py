"""``manage.py visrec_demo``: load the deterministic demo catalogue and shoppers."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog.demo import builder


class Command(BaseCommand):
    """Draw demo products, simulate shoppers and store both (skipped when already loaded)."""

    help = (
        "Create a demo catalogue of drawn product photos and simulated shoppers with hidden visual tastes. "
        "Idempotent: does nothing when the same catalogue is loaded; --force rebuilds it. "
        "Images are left pending: run `visrec_embed --missing` afterwards."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--products", type=int, default=1500, help="number of products (default 1500)")
        parser.add_argument("--users", type=int, default=400, help="number of simulated shoppers (default 400)")
        parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
        parser.add_argument("--workers", type=int, default=None, help="drawing processes (default: up to 2)")
        parser.add_argument("--force", action="store_true", help="delete the demo products and shoppers, rebuild")

    def handle(self, *args, **options) -> None:
        params = _params(options)
        if not options["force"] and builder.is_loaded(params):
            self.stdout.write(f"Demo catalogue already loaded ({_describe(params)}); use --force to rebuild.")
            return
        if options["force"]:
            deleted = builder.delete_demo()
            self.stdout.write(
                f"Deleted the previous demo catalogue ({deleted['products']} products, {deleted['users']} users)."
            )
        elif builder.has_demo_data():
            raise CommandError("Another demo catalogue (or shopper-* users) exists; use --force to replace it.")
        result = builder.build_demo(params, workers=options["workers"], progress=options["verbosity"] > 0)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo catalogue loaded in {result.seconds:.1f} s: {result.products} products, "
                f"{result.images} images, {result.users} users, {result.interactions} interactions."
            )
        )


def _params(options: dict) -> builder.DemoParams:
    for name in ("products", "users"):
        if options[name] < 1:
            raise CommandError(f"--{name} must be at least 1")
    return builder.DemoParams(products=options["products"], users=options["users"], seed=options["seed"])


def _describe(params: builder.DemoParams) -> str:
    return f"{params.products} products, {params.users} users, seed {params.seed}"
