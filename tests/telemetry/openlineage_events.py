"""Validating OpenLineage events with the typed model that ``openlineage-python`` generates from the spec.

No installable package ships the standard's JSON schemas (``OpenLineage.json`` and the facet
schemas): ``openlineage-python`` ships only the classes generated from them, and the other
OpenLineage packages (integration-common, the Airflow provider, dbt, sql ...) ship their own
facets' schemas only. So each event is rebuilt, field by field, into those classes
(``openlineage.client.event_v2.RunEvent`` and the ``openlineage.client.generated`` facets):

- every key must be a field of its class (unknown keys are refused at every level, stricter
  than the spec, which lets facets carry extra keys: Meshgate's own go into its ``meshgate``
  facet), every field without a default must be there, and every value must have the
  field's type (``str``, ``int``, lists, enums, nested classes);
- the classes' own validators run (``eventTime`` parses, ``runId`` is a UUID); on top,
  ``eventTime`` must be an RFC 3339 date-time (with its offset) and every producer and schema
  URL an absolute URI (RFC 3986), as the spec's ``format`` keywords ask;
- each facet's ``_schemaURL`` must be its class's and its ``_producer`` the expected one
  (Meshgate's, or the client's for the ``tags`` facet the client adds);
- serialising the rebuilt event with the client's own serde gives back the event unchanged.
"""

from __future__ import annotations

import enum
import types
import typing
from typing import Any

import attr
from openlineage.client.constants import DEFAULT_PRODUCER
from openlineage.client.event_v2 import RunEvent
from openlineage.client.facet_v2 import (
    error_message_run,
    job_type_job,
    processing_engine_run,
    schema_dataset,
    sql_job,
    tags_run,
)
from openlineage.client.generated.base import BaseEvent, BaseFacet, DatasetFacet, JobFacet, RunFacet
from openlineage.client.serde import Serde
from rfc3339_validator import validate_rfc3339
from rfc3986_validator import validate_rfc3986

from gateway.telemetry.lineage import MeshgateRunFacet

# The facets Meshgate emits, under the names the spec gives them, by where they sit in an event.
FACETS: dict[type[BaseFacet], dict[str, type[BaseFacet]]] = {
    JobFacet: {"sql": sql_job.SQLJobFacet, "jobType": job_type_job.JobTypeJobFacet},
    RunFacet: {
        "processing_engine": processing_engine_run.ProcessingEngineRunFacet,
        "errorMessage": error_message_run.ErrorMessageRunFacet,
        "meshgate": MeshgateRunFacet,
        "tags": tags_run.TagsRunFacet,
    },
    DatasetFacet: {"schema": schema_dataset.SchemaDatasetFacet},
}
# Facets the OpenLineage client adds itself (its version as a run tag), with its own producer.
CLIENT_FACETS = {"tags"}
_URIS = {"producer", "schemaURL", "_producer", "_schemaURL"}


class InvalidEvent(AssertionError):
    """An event that the OpenLineage model refuses; the message names where and why."""


def validate_run_event(event: Any, producer: str) -> RunEvent:
    """The RunEvent that ``event`` (a decoded JSON object) is, or InvalidEvent naming what is wrong."""
    rebuilt = _structure(RunEvent, event, "event", producer)
    if rebuilt.producer != producer:
        raise InvalidEvent(f"event.producer: expected {producer!r}, got {rebuilt.producer!r}")
    if Serde.to_dict(rebuilt) != event:
        raise InvalidEvent(f"event: does not survive a round trip through the model: {Serde.to_dict(rebuilt)}")
    return rebuilt


def _structure(kind: Any, value: Any, where: str, producer: str) -> Any:
    """``value`` as an instance of the type ``kind`` (a class, a union, a list or dict type)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (member,) = (arg for arg in args if arg is not type(None))  # the model has only `X | None`
        return _structure(member, value, where, producer)
    if origin is list:
        if not isinstance(value, list):
            raise InvalidEvent(f"{where}: expected a list, got {value!r}")
        return [_structure(args[0], item, f"{where}[{i}]", producer) for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise InvalidEvent(f"{where}: expected an object, got {value!r}")
        return {name: _facet(args[1], name, item, f"{where}.{name}", producer) for name, item in value.items()}
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        try:
            return kind(value)
        except ValueError:
            raise InvalidEvent(f"{where}: {value!r} is not one of {[m.value for m in kind]}") from None
    if attr.has(kind):
        return _instance(kind, value, where, producer)
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise InvalidEvent(f"{where}: expected {kind.__name__}, got {value!r}")
    return value


def _facet(base: Any, name: str, value: Any, where: str, producer: str) -> Any:
    """A facet of ``base``'s kind, of the class registered for ``name`` there."""
    known = FACETS.get(base)
    if known is None:
        raise InvalidEvent(f"{where}: Meshgate emits no facets of kind {base.__name__}")
    if name not in known:
        raise InvalidEvent(f"{where}: {name!r} is not one of the {base.__name__}s {sorted(known)}")
    facet = _structure(known[name], value, where, producer)
    expected = DEFAULT_PRODUCER if name in CLIENT_FACETS else producer
    if value.get("_producer") != expected:
        raise InvalidEvent(f"{where}._producer: expected {expected!r}, got {value.get('_producer')!r}")
    return facet


def _instance(cls: type[Any], value: Any, where: str, producer: str) -> Any:
    """An attrs instance of ``cls`` from the object ``value``: its validators run on construction."""
    if not isinstance(value, dict):
        raise InvalidEvent(f"{where}: expected an object ({cls.__name__}), got {value!r}")
    fields = {field.name: field for field in attr.fields(cls)}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise InvalidEvent(f"{where}: unknown fields {unknown} for {cls.__name__}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        if name not in value:
            if field.default is attr.NOTHING:
                raise InvalidEvent(f"{where}.{name}: required by {cls.__name__} and missing")
            continue
        item = _structure(hints[name], value[name], f"{where}.{name}", producer)
        if name in _URIS and not validate_rfc3986(item, rule="URI"):
            raise InvalidEvent(f"{where}.{name}: {item!r} is not an absolute URI")
        if name == "eventTime" and not validate_rfc3339(item):
            raise InvalidEvent(f"{where}.eventTime: {item!r} is not an RFC 3339 date-time")
        if field.init:
            kwargs[field.alias] = item
    try:
        instance = cls(**kwargs)
    except (TypeError, ValueError) as error:  # the model's validators (UUID, ISO 8601 ...)
        raise InvalidEvent(f"{where}: {cls.__name__} refuses it: {error}") from None
    if issubclass(cls, BaseEvent | BaseFacet):
        key = "schemaURL" if issubclass(cls, BaseEvent) else "_schemaURL"
        if value.get(key) != cls._get_schema():
            raise InvalidEvent(f"{where}.{key}: expected {cls._get_schema()!r}, got {value.get(key)!r}")
    return instance
