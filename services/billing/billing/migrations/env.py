from platform_runtime.alembic_env import run

from billing.adapters.tables import metadata

run(metadata)
