"""``createapikey <username> [--name NAME] [--expires-days N]``: the key alone on the last line."""

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounts.models import User
from accounts.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for a user and print it (the key alone on the last line)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="cli")
        parser.add_argument("--expires-days", type=int, default=None)

    def handle(self, *args: object, username: str, name: str, expires_days: int | None, **options: object) -> None:
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        expires_at = timezone.now() + timedelta(days=expires_days) if expires_days else None
        issued = api_key_create(owner=user, name=name, expires_at=expires_at)
        self.stderr.write(f"Created API key {issued.api_key.prefix!r} ({name}) for {username}. It is shown once:")
        self.stdout.write(issued.secret)
