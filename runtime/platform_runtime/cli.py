"""`python -m <service> [serve|migrate|revision]`, the same for every service (typer)."""

import typer

from . import migrate as migrations
from .service import ServiceDefinition, serve
from .settings import MigrationSettings


def main(definition: ServiceDefinition) -> None:
    app = typer.Typer(add_completion=False, help=f"The {definition.name} service")

    @app.command("serve")
    def serve_command() -> None:
        """Consume, relay, fire timers and answer HTTP until SIGTERM."""
        serve(definition)

    @app.command("migrate")
    def migrate_command() -> None:
        """Bring the service's database to the newest schema, as its owner role (MIGRATION_DATABASE_URL)."""
        migrations.upgrade(definition.migrations_dir, MigrationSettings().url)
        if definition.after_migrate:
            definition.after_migrate()

    @app.command("revision")
    def revision_command(message: str) -> None:
        """Write a new Alembic revision from the difference between models and database."""
        migrations.revision(definition.migrations_dir, MigrationSettings().url, message)

    @app.callback(invoke_without_command=True)
    def default(ctx: typer.Context) -> None:
        if ctx.invoked_subcommand is None:
            serve(definition)

    app()
