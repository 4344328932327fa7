from platform_runtime.alembic_env import run

from contracts.adapters.tables import metadata

run(metadata)
