"""The names a notification gives its people, and whose it still waits for.

A registration travels under its account and a contract's events under the contract: on other partitions, so
notifications may handle an event about people before their registration, later in the same batch or in a later
one. The text then says
"the client" or "the freelancer", and the notification records whose names it waits for. A registration fills them
in (service_layer/handlers.py); an email waits for them at most `names_wait`, then leaves with the stand-in wording,
so a person never registered with this service holds nothing up for long.

Pure: works on a notification's template values (service_layer/handlers.py `template_values`) and the names known.
"""

from collections.abc import Mapping
from typing import Any

# The template values that name someone, the value holding that person's id, and the wording without a name.
# `account_name` falls back to the id itself (an account's own events: suspended, reactivated, ...).
NAMED: tuple[tuple[str, str, str | None], ...] = (
    ("recipient_name", "recipient_id", "there"),
    ("client_name", "client_id", "the client"),
    ("freelancer_name", "freelancer_id", "the freelancer"),
    ("account_name", "account_id", None),
)


def names_for(values: Mapping[str, Any], names: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The name fields of a notification's values, and the ids of the people named whose names are not known yet
    (sorted, each once). Invariant: an id is listed iff some field fell back to its stand-in wording for it."""
    fields: dict[str, str] = {}
    unknown: set[str] = set()
    for field, id_field, stand_in in NAMED:
        person = values.get(id_field)
        if not person:
            fields[field] = stand_in or ""
        elif person in names:
            fields[field] = names[person]
        else:
            fields[field] = stand_in or person
            unknown.add(person)
    return fields, sorted(unknown)


def names_given(values: Mapping[str, Any], unknown: list[str]) -> dict[str, str]:
    """The names a notification's values already give (every person named but those still unknown): with the
    names that came since, what it is rendered again from."""
    return {values[id_field]: values[field] for field, id_field, _ in NAMED
            if values.get(id_field) and values[id_field] not in unknown and field in values}
