"""Validating OpenLineage events against the standard's JSON schemas (``tests/fixtures/openlineage``)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

SCHEMAS = Path(__file__).parent.parent / "fixtures" / "openlineage"
CORE = "https://openlineage.io/spec/2-0-2/OpenLineage.json"

# Facet name -> the schema file that defines it, by where the facet sits in an event.
JOB_FACETS = {"sql": "SQLJobFacet.json", "jobType": "JobTypeJobFacet.json"}
RUN_FACETS = {"errorMessage": "ErrorMessageRunFacet.json", "processing_engine": "ProcessingEngineRunFacet.json"}
DATASET_FACETS = {"schema": "SchemaDatasetFacet.json"}


@cache
def _schemas() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in SCHEMAS.glob("*.json")}


@cache
def _registry() -> Registry:
    resources = [(schema["$id"], Resource.from_contents(schema)) for schema in _schemas().values()]
    return Registry().with_resources(resources)


def _validate(schema: dict[str, Any], instance: Any) -> None:
    validator = Draft202012Validator(schema, registry=_registry(), format_checker=FormatChecker())
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def validate_run_event(event: dict[str, Any]) -> None:
    """Raise AssertionError naming every way ``event`` breaks the RunEvent schema or a known facet's."""
    _validate({"$ref": f"{CORE}#/$defs/RunEvent"}, event)
    checks = [(JOB_FACETS, event["job"].get("facets", {})), (RUN_FACETS, event["run"].get("facets", {}))]
    checks += [(DATASET_FACETS, dataset.get("facets", {})) for dataset in event.get("inputs", [])]
    for known, facets in checks:
        for name, facet in facets.items():
            if name in known:
                _validate(_schemas()[known[name]], {name: facet})
