from platform_runtime.alembic_env import run

from escrow.adapters.tables import metadata

run(metadata)
