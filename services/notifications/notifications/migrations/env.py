from platform_runtime.alembic_env import run

from notifications.adapters.tables import metadata

run(metadata)
