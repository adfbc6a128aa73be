"""``rotate_mcp_credentials``: re-encrypt users' MCP credentials and OAuth tokens with the first key."""

from django.core.management.base import BaseCommand, CommandError

from mcp_servers.credentials import credentials_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt users' MCP credentials and OAuth tokens with the first key of MCP_CREDENTIALS_KEYS. Run it "
        "after putting a new key first (the old ones after it); once it succeeds, the old keys can be removed."
    )

    def handle(self, *args: object, **options: object) -> None:
        report = credentials_rotate()
        self.stdout.write(f"Re-encrypted {report.rotated} credential row(s) with the first key.")
        self.stdout.write(f"Re-encrypted {report.oauth_rotated} OAuth token and sign-in row(s) with the first key.")
        problems = []
        if report.unreadable:
            ids = ", ".join(str(pk) for pk in report.unreadable)
            problems.append(
                f"{len(report.unreadable)} row(s) could not be decrypted with any configured key (ids {ids}): "
                "add the key that encrypted them to MCP_CREDENTIALS_KEYS and run this again, or delete them in "
                "admin (those users then set their values again)."
            )
        if report.oauth_unreadable:
            problems.append(
                f"{len(report.oauth_unreadable)} OAuth row(s) could not be decrypted with any configured key "
                f"({', '.join(report.oauth_unreadable)}): add the key and run this again, or delete them in admin "
                "(those users then sign in again)."
            )
        if problems:
            raise CommandError(" ".join(problems))
