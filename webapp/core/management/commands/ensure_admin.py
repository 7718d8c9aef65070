import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from webapp.settings import env_str


class Command(BaseCommand):
    help = "Create the first site admin if there is none (VINTNER_ADMIN_USERNAME/PASSWORD/EMAIL, or generated)."

    def handle(self, *args, **options) -> None:
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        username = env_str("VINTNER_ADMIN_USERNAME", "admin")
        password = env_str("VINTNER_ADMIN_PASSWORD")
        generated = not password
        password = password or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email=env_str("VINTNER_ADMIN_EMAIL"), password=password)
        if generated:
            # Printed once, never stored in clear: the admin changes it after signing in.
            self.stdout.write(self.style.WARNING(f"First admin created: username {username!r}, password {password!r}"))
        else:
            self.stdout.write(f"First admin created: username {username!r} (password from VINTNER_ADMIN_PASSWORD)")
