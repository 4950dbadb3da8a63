"""``manage.py visrec_fit_head [--if-due]``: learn the similarity head from the shop's categories and switch to it."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from recommendations import similarity
from recommendations.ml.head import NotEnoughLabels


class Command(BaseCommand):
    help = (
        "Fit the similarity head of the fitted descriptor (VISREC BACKBONE 'efficientnet_lite0_fitted') on the "
        "products' categories and switch to its vectors, derived from the stored ones without running the CNN."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--if-due",
            action="store_true",
            help="only when there is no head yet or the products per category changed by more than 10%% (nightly)",
        )

    def handle(self, *args, if_due: bool = False, **options) -> None:
        if if_due:
            self.stdout.write(similarity.refit_if_due() or "The configured backbone has no similarity head.")
            return
        try:
            report = similarity.fit_similarity_head()
        except (NotEnoughLabels, similarity.HeadUnavailable) as e:
            raise CommandError(f"No similarity head fitted, nothing changed: {e}") from e
        self.stdout.write(f"Similarity head fitted in {report.seconds:.1f}s, {report.describe()}.")
