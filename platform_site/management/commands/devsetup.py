"""``devsetup``: everything ``make run`` needs before the server starts, in one process.

Four manage.py processes (migrate, collectstatic, ensureadmin, ensure_default_mcp_servers) took 5-8 s each
to start Django even when nothing had changed. Here Django starts once, and migrate runs only when a
migration is unapplied. collectstatic is not part of it: WHITENOISE_USE_FINDERS serves every app's static
files from the app itself (finders win over STATIC_ROOT), so a dev server never reads STATIC_ROOT's copies;
the production image collects them when it is built (Dockerfile).
"""

from argparse import ArgumentParser
from typing import Any

from django.core import checks
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor


class Command(BaseCommand):
    help = "Apply unapplied migrations, create the admin user and the default MCP servers (run by `make run`)."
    # Checked in handle() without the model checks: Provider.kind's choices are the registered adapters, and
    # listing them imports every provider SDK (3-4 s of the command's ~7). The test suite runs those checks.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="The database to set up.")

    def handle(self, *args: object, **options: Any) -> None:
        database: str = options["database"]
        verbosity: int = options["verbosity"]
        self.check(tags=sorted(set(checks.registry.registry.tags_available()) - {checks.Tags.models}))
        pending = self._unapplied(database)
        if pending:
            self.stdout.write(f"Migrations: applying {len(pending)}.")
            self._call("migrate", database=database, interactive=False, verbosity=verbosity)
        else:
            self.stdout.write("Migrations: none to apply.")
        self._call("ensureadmin")
        self._call("ensure_default_mcp_servers")

    def _call(self, name: str, **options: Any) -> None:
        # The command wraps our stdout in its own OutputWrapper, which ends its lines itself: ours must add
        # nothing, or "Applying x..." and its " OK" land on two lines.
        ending, self.stdout.ending = self.stdout.ending, ""
        try:
            call_command(name, stdout=self.stdout, **options)
        finally:
            self.stdout.ending = ending

    @staticmethod
    def _unapplied(database: str) -> list[str]:
        """The migrations ``migrate`` would apply now, as ``app.name``: empty when the schema is current."""
        connection = connections[database]
        executor = MigrationExecutor(connection)
        targets = executor.loader.graph.leaf_nodes()
        return [f"{migration.app_label}.{migration.name}" for migration, _backwards in executor.migration_plan(targets)]
