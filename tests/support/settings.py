"""A service's settings as it would read them at start, for unit tests: the required database URL points nowhere
(the engine connects on first use, and these tests never use it)."""

UNCONNECTED_URL = "postgresql+asyncpg://nobody@127.0.0.1:1/none"


def settings_of(definition, **env):
    """`definition`'s settings with `env` as keyword overrides; the environment applies as at start."""
    return definition.settings_type(database_url=UNCONNECTED_URL, **env)
