"""Write the JSON Schemas and the AsyncAPI document generated from the models (`make schemas`).

    python -m platform_schemas.generate          # (re)write schemas/json/*.json and schemas/asyncapi.json
    python -m platform_schemas.generate --check  # exit 1, listing the files that differ, if any would change
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from . import registry
from .asyncapi import build_asyncapi, topics_of
from .envelope import Envelope, dataschema_of

DIALECT = "https://json-schema.org/draft/2020-12/schema"
ENVELOPE_ID = "urn:escrow:schema:Envelope:1"
# schemas/ of the source tree (the package is installed editable from it).
DEFAULT_ROOT = Path(__file__).resolve().parent.parent
JSON_DIR = "json"
ASYNCAPI_FILE = "asyncapi.json"


def schema_file_name(type_name: str, version: int) -> str:
    return f"{type_name}.v{version}.json"


def _envelope_schema() -> dict[str, Any]:
    schema = Envelope.model_json_schema()
    schema.update(
        {
            "$schema": DIALECT,
            "$id": ENVELOPE_ID,
            "title": "Envelope",
            "description": (
                "CloudEvents 1.0 envelope, structured JSON mode (application/cloudevents+json), of every "
                "command and event. `data` follows the schema named by `dataschema`; other extension "
                "attributes are allowed and kept."
            ),
        }
    )
    return schema


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name (under schemas/json/) -> JSON Schema: one per (type, version) in registry.VERSIONS,
    describing the envelope's `data`, plus `Envelope.json`."""
    out: dict[str, dict[str, Any]] = {"Envelope.json": _envelope_schema()}
    for (type_name, version), model in sorted(registry.VERSIONS.items()):
        message_topics = topics_of(type_name)
        schema = model.model_json_schema()
        schema.update(
            {
                "$schema": DIALECT,
                "$id": dataschema_of(type_name, version),
                "title": type_name,
                "x-version": version,
                "x-kind": "command" if any(t.endswith("commands") for t in message_topics) else "event",
                "x-topics": message_topics,
            }
        )
        out[schema_file_name(type_name, version)] = schema
    return out


def render(document: Any) -> str:
    """The one serialisation of every generated file: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def expected_files() -> dict[str, str]:
    """Path relative to schemas/ -> the exact text that file must have."""
    files = {f"{JSON_DIR}/{name}": render(schema) for name, schema in json_schemas().items()}
    files[ASYNCAPI_FILE] = render(build_asyncapi())
    return files


def drifted(root: Path = DEFAULT_ROOT) -> list[str]:
    """Generated files that are missing, different, or stale (no longer generated), relative to root."""
    expected = expected_files()
    problems = [
        path
        for path, text in expected.items()
        if not (root / path).is_file() or (root / path).read_text(encoding="utf-8") != text
    ]
    json_dir = root / JSON_DIR
    if json_dir.is_dir():
        problems += [
            f"{JSON_DIR}/{p.name}" for p in json_dir.glob("*.json") if f"{JSON_DIR}/{p.name}" not in expected
        ]
    return sorted(problems)


def write(root: Path = DEFAULT_ROOT) -> list[str]:
    """Bring the generated files under root up to date; returns the ones changed or removed."""
    changed = drifted(root)
    expected = expected_files()
    (root / JSON_DIR).mkdir(parents=True, exist_ok=True)
    for path in changed:
        target = root / path
        if path in expected:
            target.write_text(expected[path], encoding="utf-8")
        else:
            target.unlink()
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m platform_schemas.generate", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--check", action="store_true", help="compare with the files on disk, write nothing")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="the schemas/ directory")
    args = parser.parse_args(argv)
    if args.check:
        problems = drifted(args.root)
        if problems:
            print("generated schema files are out of date (run `make schemas`):", file=sys.stderr)
            for path in problems:
                print(f"  {args.root / path}", file=sys.stderr)
            return 1
        print(f"{len(expected_files())} generated schema files are up to date")
        return 0
    changed = write(args.root)
    for path in changed:
        print(f"wrote {args.root / path}")
    print(f"{len(changed)} of {len(expected_files())} generated schema files changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
