"""``rotate_mcp_credentials``: re-encrypt every user's MCP credentials with the first of MCP_CREDENTIALS_KEYS."""

from django.core.management.base import BaseCommand, CommandError

from mcp_servers.credentials import credentials_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt users' MCP credentials with the first key of MCP_CREDENTIALS_KEYS. Run it after putting a "
        "new key first (the old ones after it); once it succeeds, the old keys can be removed."
    )

    def handle(self, *args: object, **options: object) -> None:
        report = credentials_rotate()
        self.stdout.write(f"Re-encrypted {report.rotated} credential row(s) with the first key.")
        if report.unreadable:
            ids = ", ".join(str(pk) for pk in report.unreadable)
            raise CommandError(
                f"{len(report.unreadable)} row(s) could not be decrypted with any configured key (ids {ids}): "
                "add the key that encrypted them to MCP_CREDENTIALS_KEYS and run this again, or delete them in "
                "admin (those users then set their values again)."
            )
