import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from webapp.settings import env_str


def admin_ensure() -> tuple[str, str | None] | None:
    """The first site admin, made if there is none: (username, the generated password, or None
    when VINTNER_ADMIN_PASSWORD gave it); None when a site admin exists already."""
    User = get_user_model()
    if User.objects.filter(is_superuser=True).exists():
        return None
    username = env_str("VINTNER_ADMIN_USERNAME", "admin")
    given = env_str("VINTNER_ADMIN_PASSWORD")
    password = given or secrets.token_urlsafe(12)
    User.objects.create_superuser(username=username, email=env_str("VINTNER_ADMIN_EMAIL"), password=password)
    return username, None if given else password


def framed(lines: list[str]) -> str:
    """Lines in a box, so that they stand out at the end of a scrolling start-up log."""
    width = max(len(line) for line in lines)
    return "\n".join(["┌" + "─" * (width + 2) + "┐", *(f"│ {line.ljust(width)} │" for line in lines),
                      "└" + "─" * (width + 2) + "┘"])


def admin_lines(created: tuple[str, str | None]) -> list[str]:
    username, password = created
    if password is None:
        return [f"First admin created: username {username!r} (password from VINTNER_ADMIN_PASSWORD)"]
    # Printed once, never stored in clear: the admin changes it after signing in.
    return [f"First admin created: username {username!r}, password {password!r}",
            "Shown only now. Lost it? python manage.py ensure_admin --reset-password"]


class Command(BaseCommand):
    help = ("Create the first site admin if there is none (VINTNER_ADMIN_USERNAME/PASSWORD/EMAIL, or a generated "
            "password, printed once); --reset-password gives a site admin a new generated password.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--reset-password", nargs="?", const="", default=None, metavar="USERNAME",
                            help="print a new generated password for this site admin (default: the only one)")

    def handle(self, *args, reset_password: str | None = None, **options) -> None:
        if reset_password is not None:
            self.stdout.write(framed(self._reset(reset_password)))
            return
        created = admin_ensure()
        if created:
            self.stdout.write(self.style.WARNING(framed(admin_lines(created))))

    def _reset(self, username: str) -> list[str]:
        admins = get_user_model().objects.filter(is_superuser=True)
        if username:
            admins = admins.filter(username=username)
        admins = list(admins[:2])
        if len(admins) != 1:
            raise CommandError(f"No site admin is named {username!r}." if username else
                               "There are several site admins (or none): name one, --reset-password USERNAME.")
        password = secrets.token_urlsafe(12)
        admins[0].set_password(password)
        admins[0].save(update_fields=["password"])
        return [f"New password for site admin {admins[0].username!r}: {password!r}", "Shown only now."]
