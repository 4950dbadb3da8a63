"""``manage.py visrec_demo_admin``: create (once) the demo shop owner and print the login."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

USERNAME, PASSWORD = "admin", "visrec-demo"


class Command(BaseCommand):
    help = "Create the demo admin account if missing and print how to log in."

    def handle(self, *args, **options) -> None:
        User = get_user_model()
        user, created = User.objects.get_or_create(username=USERNAME, defaults={"is_staff": True, "is_superuser": True})
        if created:
            user.set_password(PASSWORD)
            user.save()
        self.stdout.write(
            "\n  Shop:  http://127.0.0.1:8000/\n  Admin: http://127.0.0.1:8000/admin/  "
            f"(user {USERNAME!r}, password {PASSWORD!r}{'' if created else ' unless you changed it'})\n"
        )
