"""``ensureadmin``: create the superuser from ADMIN_USERNAME / ADMIN_PASSWORD / ADMIN_EMAIL if absent."""

import secrets

from django.conf import settings
from django.core.management.base import BaseCommand

from accounts.services import user_ensure_admin


class Command(BaseCommand):
    help = "Create the admin superuser if it does not exist yet."

    def handle(self, *args: object, **options: object) -> None:
        password = settings.ADMIN_PASSWORD
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        user, created = user_ensure_admin(
            username=settings.ADMIN_USERNAME, email=settings.ADMIN_EMAIL, password=password
        )
        if not created:
            self.stdout.write(f"Admin user {user.username!r} exists; password unchanged.")
            return
        self.stdout.write(self.style.SUCCESS(f"Created admin user {user.username!r}."))
        if generated:
            self.stdout.write(f"Generated password (shown once; set ADMIN_PASSWORD to choose one): {password}")
