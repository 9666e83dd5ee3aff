"""Policies as code: roles, grants, column masks and row filters, decided per caller.

A policy block can sit at the top level of any mesh file (written by the platform
team, applies everywhere) or inside a domain (written by the domain team, may only
name that domain's products). Platform rules are never weakened by a domain: masks
and row filters from every level apply together.

    policies:
      roles:
        analyst: [alice, "group:analysts"]
      grants:
        - {role: analyst, on: "sales.*"}
        - {role: analyst, on: logistics.shipments, columns: [shipment_id, carrier]}
      masks:
        - {on: sales.customers.email, mask: hash, except: [pii_reader]}
      row_filters:
        - {on: sales.orders, where: "region = current_user_attribute('region')", except: [admin]}
      rules:                                   # platform only: by the tags of product contracts
        - {columns_tagged: pii, mask: redact, except: [pii_reader]}

Once any policy is declared, access is denied unless a grant allows it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from sqlglot import exp, parse_one
from sqlglot.errors import SqlglotError

from gateway import distinct_from, similar_to
from gateway.api import CallerContext
from gateway.errors import ConfigError, PlanningError

MASKS = ("last4", "hash", "redact", "null")  # weakest to strongest
EVERYONE = "*"
_POLICY_KEYS = {"roles", "grants", "masks", "row_filters", "rules", "classify"}


@dataclass(frozen=True)
class Grant:
    role: str
    on: str  # "*", "domain.*" or "domain.product"
    columns: tuple[str, ...] | None = None
    origin: str = ""

    def covers(self, domain: str, product: str) -> bool:
        return fnmatch.fnmatchcase(f"{domain}.{product}", self.on if "." in self.on else f"{self.on}.*")


@dataclass(frozen=True)
class Mask:
    on: str  # "domain.product.column" (wildcards allowed)
    mask: str
    exempt: tuple[str, ...] = ()
    origin: str = ""

    def covers(self, domain: str, product: str, column: str) -> bool:
        return fnmatch.fnmatchcase(f"{domain}.{product}.{column}", self.on)


@dataclass(frozen=True)
class RowFilter:
    on: str  # "domain.product" (wildcards allowed)
    where: str
    exempt: tuple[str, ...] = ()
    origin: str = ""

    def covers(self, domain: str, product: str) -> bool:
        return fnmatch.fnmatchcase(f"{domain}.{product}", self.on)


@dataclass(frozen=True)
class TagRule:
    """A platform rule: every column whose contract carries ``tag`` is masked, in every product."""

    tag: str
    mask: str
    exempt: tuple[str, ...] = ()
    origin: str = ""


@dataclass(frozen=True)
class Classification:
    """A platform pin: columns matching ``columns`` (``domain.product.column``, wildcards) carry ``tags``,
    whatever the domain's contract says, so a domain cannot lift a tag rule by dropping a tag."""

    columns: str
    tags: tuple[str, ...]
    origin: str = ""

    def covers(self, domain: str, product: str, column: str) -> bool:
        return fnmatch.fnmatchcase(f"{domain}.{product}.{column}", self.columns)


@dataclass(frozen=True)
class Access:
    """What one caller may see of one product."""

    columns: tuple[str, ...]  # granted columns, in product order
    masks: dict[str, str] = field(default_factory=dict)  # column -> mask kind
    row_filter: str | None = None  # DataFusion SQL, caller attributes already bound
    applied: tuple[str, ...] = ()  # human-readable names of what applied (for audit)

    @property
    def unrestricted(self) -> bool:
        return not self.masks and self.row_filter is None


@dataclass(frozen=True)
class PolicySet:
    """Every policy of the mesh; :meth:`access` decides for one caller and product."""

    roles: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    grants: tuple[Grant, ...] = ()
    masks: tuple[Mask, ...] = ()
    row_filters: tuple[RowFilter, ...] = ()
    rules: tuple[TagRule, ...] = ()
    classifications: tuple[Classification, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.roles or self.grants or self.masks or self.row_filters or self.rules)

    def tags(
        self, domain: str, product: str, schema: pa.Schema, contract: Mapping[str, Sequence[str]] | None
    ) -> dict[str, tuple[str, ...]]:
        """Each column's tags: its contract's, plus those the platform pins (``classify``)."""
        tags: dict[str, tuple[str, ...]] = {}
        for column in schema.names:
            found = list((contract or {}).get(column, ()))
            for pin in self.classifications:
                if pin.covers(domain, product, column):
                    found.extend(pin.tags)
            if found:
                tags[column] = tuple(dict.fromkeys(found))
        return tags

    def roles_of(self, caller: CallerContext) -> set[str]:
        """Roles held by the caller: by user name, or by ``group:NAME`` membership."""
        groups = {g.strip() for g in caller.attributes.get("groups", "").split(",") if g.strip()}
        groups |= set(caller.acts_as)
        names = {caller.user, *caller.acts_as} - {None}
        held = {EVERYONE} if caller.user else set()
        held |= set(caller.acts_as) & set(self.roles)
        for role, members in self.roles.items():
            for member in members:
                if member in names or (member.startswith("group:") and member[6:] in groups):
                    held.add(role)
        return held

    def identities_of(self, caller: CallerContext) -> set[str]:
        """Every name the caller answers to, for ownership: user, groups, acted-as names and roles."""
        groups = {g.strip() for g in caller.attributes.get("groups", "").split(",") if g.strip()}
        names = {caller.user, *groups, *caller.acts_as, *self.roles_of(caller)}
        return {name for name in names if name and name != EVERYONE}

    def access(
        self,
        caller: CallerContext,
        domain: str,
        product: str,
        schema: pa.Schema,
        tags: Mapping[str, Sequence[str]] | None = None,
    ) -> Access | None:
        """What ``caller`` may see of ``domain.product``; None when nothing is granted.

        ``tags`` gives each column's contract tags, for the platform's tag rules; the
        platform's pinned classifications are added to them.
        """
        if not self.enabled:
            return Access(columns=tuple(schema.names))
        tags = self.tags(domain, product, schema, tags)
        roles = self.roles_of(caller)
        grants = [g for g in self.grants if g.role in roles and g.covers(domain, product)]
        if not grants:
            return None
        if any(g.columns is None for g in grants):
            columns = tuple(schema.names)
        else:
            allowed = {c for g in grants for c in g.columns or ()}
            columns = tuple(name for name in schema.names if name in allowed)
        applied = [f"grant {g.role} on {g.on}{' ' + g.origin if g.origin else ''}" for g in grants]
        masks: dict[str, str] = {}
        for column in columns:
            strongest: str | None = None
            for mask in self.masks:
                if mask.covers(domain, product, column) and not roles & set(mask.exempt):
                    if strongest is None or MASKS.index(mask.mask) > MASKS.index(strongest):
                        strongest = mask.mask
                    applied.append(f"mask {mask.mask} on {mask.on}")
            for rule in self.rules:
                if rule.tag in tags.get(column, ()) and not roles & set(rule.exempt):
                    if strongest is None or MASKS.index(rule.mask) > MASKS.index(strongest):
                        strongest = rule.mask
                    applied.append(f"mask {rule.mask} on columns tagged {rule.tag} ({domain}.{product}.{column})")
            if strongest is not None:
                masks[column] = strongest
        filters = [f for f in self.row_filters if f.covers(domain, product) and not roles & set(f.exempt)]
        row_filter = None
        if filters:
            row_filter = " AND ".join(f"({bind_caller(f.where, caller)})" for f in filters)
            applied.extend(f"row filter on {f.on}: {f.where}" for f in filters)
        return Access(columns=columns, masks=masks, row_filter=row_filter, applied=tuple(dict.fromkeys(applied)))


def bind_caller(predicate: str, caller: CallerContext) -> str:
    """Replace ``current_user()`` and ``current_user_attribute('x')`` by literals.

    A missing attribute becomes NULL, so the filter selects nothing (fail closed).
    """

    def bind(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Anonymous) and node.name.lower() == "current_user_attribute":
            (argument,) = node.expressions
            value = caller.attributes.get(argument.name)
            return exp.Literal.string(value) if value is not None else exp.Null()
        if isinstance(node, (exp.CurrentUser, exp.Anonymous)) and node.name.lower() in {"current_user", ""}:
            return exp.Literal.string(caller.user) if caller.user else exp.Null()
        return node

    bound = parse_one(predicate, read="postgres").transform(bind)
    return distinct_from.parenthesized(bound).sql(dialect="postgres")  # as DataFusion must read it


# --------------------------------------------------------------------------- loading


def parse_policies(raw: Any, where: str, *, domain: str | None = None) -> PolicySet:
    """Validate one ``policies:`` block; ``where`` names the file and line for errors.

    A domain's block may only name that domain's products and may not define roles.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: policies: must be a mapping with roles, grants, masks, row_filters")
    unknown = sorted(set(raw) - _POLICY_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: policies.{unknown[0]}: unknown key; expected one of {', '.join(sorted(_POLICY_KEYS))}"
        )
    if domain is not None and raw.get("roles"):
        raise ConfigError(f"{where}: policies.roles: roles are defined by the platform, not in a domain file")
    if domain is not None and raw.get("rules"):
        raise ConfigError(f"{where}: policies.rules: tag rules are the platform's, not in a domain file")
    if domain is not None and raw.get("classify"):
        raise ConfigError(
            f"{where}: policies.classify: pinned classifications are the platform's, not in a domain file"
        )
    roles = _roles(raw.get("roles") or {}, where)
    grants = tuple(
        _grant(item, f"{where}: policies.grants[{i}]", domain) for i, item in enumerate(_list(raw, "grants", where))
    )
    masks = tuple(
        _mask(item, f"{where}: policies.masks[{i}]", domain) for i, item in enumerate(_list(raw, "masks", where))
    )
    filters = tuple(
        _row_filter(item, f"{where}: policies.row_filters[{i}]", domain)
        for i, item in enumerate(_list(raw, "row_filters", where))
    )
    rules = tuple(_rule(item, f"{where}: policies.rules[{i}]") for i, item in enumerate(_list(raw, "rules", where)))
    pins = tuple(
        _classification(item, f"{where}: policies.classify[{i}]")
        for i, item in enumerate(_list(raw, "classify", where))
    )
    return PolicySet(roles=roles, grants=grants, masks=masks, row_filters=filters, rules=rules, classifications=pins)


def merge(sets: Iterable[PolicySet]) -> PolicySet:
    """All policy blocks of the mesh as one set (roles must not be defined twice)."""
    roles: dict[str, tuple[str, ...]] = {}
    grants: list[Grant] = []
    masks: list[Mask] = []
    filters: list[RowFilter] = []
    rules: list[TagRule] = []
    pins: list[Classification] = []
    for policy in sets:
        for role, members in policy.roles.items():
            if role in roles:
                raise ConfigError(f"policies.roles.{role}: defined twice")
            roles[role] = members
        grants.extend(policy.grants)
        masks.extend(policy.masks)
        filters.extend(policy.row_filters)
        rules.extend(policy.rules)
        pins.extend(policy.classifications)
    return PolicySet(
        roles=roles,
        grants=tuple(grants),
        masks=tuple(masks),
        row_filters=tuple(filters),
        rules=tuple(rules),
        classifications=tuple(pins),
    )


def check_references(
    policies: PolicySet, products: Mapping[tuple[str, str], pa.Schema], offline: Iterable[str] = ()
) -> None:
    """Every policy must name something that exists: a typo must not silently open or close data.

    Policies on domains that are offline right now cannot be checked and are kept.
    """
    skipped = set(offline)
    names = {f"{d}.{p}" for d, p in products}
    columns = {f"{d}.{p}.{c}" for (d, p), schema in products.items() for c in schema.names}

    def unchecked(target: str) -> bool:
        return target.split(".")[0] in skipped

    for grant in policies.grants:
        pattern = grant.on if "." in grant.on else f"{grant.on}.*"
        if not unchecked(grant.on) and not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            raise ConfigError(f"{grant.origin}: grant on '{grant.on}' matches no data product")
        if grant.role not in policies.roles and grant.role != EVERYONE:
            raise ConfigError(f"{grant.origin}: grant to unknown role '{grant.role}'")
    for mask in policies.masks:
        if not unchecked(mask.on) and not any(fnmatch.fnmatchcase(c, mask.on) for c in columns):
            raise ConfigError(f"{mask.origin}: mask on '{mask.on}' matches no column")
    for row_filter in policies.row_filters:
        if not unchecked(row_filter.on) and not any(fnmatch.fnmatchcase(n, row_filter.on) for n in names):
            raise ConfigError(f"{row_filter.origin}: row filter on '{row_filter.on}' matches no data product")
    # A rule's tag may not be used by any contract yet: it masks nothing until one is.
    exempting: tuple[Mask | RowFilter | TagRule, ...] = (*policies.masks, *policies.row_filters, *policies.rules)
    for policy in exempting:
        for role in policy.exempt:
            if role not in policies.roles:
                raise ConfigError(f"{policy.origin}: except names unknown role '{role}'")


def _list(raw: Mapping[str, Any], key: str, where: str) -> Sequence[Any]:
    value = raw.get(key) or []
    if not isinstance(value, list):
        raise ConfigError(f"{where}: policies.{key}: must be a list")
    return value


def _roles(raw: Any, where: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: policies.roles: must map role names to lists of users or group:NAME")
    roles: dict[str, tuple[str, ...]] = {}
    for role, members in raw.items():
        if not isinstance(members, list) or not all(isinstance(m, str) and m for m in members):
            raise ConfigError(f"{where}: policies.roles.{role}: must be a list of user names or group:NAME")
        roles[str(role)] = tuple(members)
    return roles


def _fields(raw: Any, where: str, required: set[str], optional: set[str]) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a mapping with {', '.join(sorted(required))}")
    unknown = sorted(set(raw) - required - optional)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key; expected {', '.join(sorted(required | optional))}")
    missing = sorted(key for key in required if not isinstance(raw.get(key), str) or not raw[key])
    if missing:
        raise ConfigError(f"{where}.{missing[0]}: missing (a non-empty string)")
    return raw


def _scoped(target: str, where: str, domain: str | None, parts: int) -> str:
    pieces = target.split(".")
    if target != "*" and not 1 <= len(pieces) <= parts:
        raise ConfigError(
            f"{where}.on: '{target}' must look like {'domain.product.column' if parts == 3 else 'domain.product'}"
        )
    if domain is not None and pieces[0] != domain:
        raise ConfigError(
            f"{where}.on: a domain's policies may only name its own products ('{domain}.…'), not '{target}'"
        )
    return target


def _exempt(raw: Mapping[str, Any], where: str) -> tuple[str, ...]:
    value = raw.get("except") or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}.except: must be a list of role names")
    return tuple(value)


def _grant(raw: Any, where: str, domain: str | None) -> Grant:
    item = _fields(raw, where, {"role", "on"}, {"columns"})
    columns = item.get("columns")
    if columns is not None and (not isinstance(columns, list) or not all(isinstance(c, str) for c in columns)):
        raise ConfigError(f"{where}.columns: must be a list of column names")
    return Grant(
        role=item["role"],
        on=_scoped(item["on"], where, domain, 2),
        columns=tuple(columns) if columns is not None else None,
        origin=where,
    )


def _mask(raw: Any, where: str, domain: str | None) -> Mask:
    item = _fields(raw, where, {"on", "mask"}, {"except"})
    if item["mask"] not in MASKS:
        raise ConfigError(f"{where}.mask: unknown mask '{item['mask']}'; expected one of {', '.join(MASKS)}")
    return Mask(on=_scoped(item["on"], where, domain, 3), mask=item["mask"], exempt=_exempt(item, where), origin=where)


def _rule(raw: Any, where: str) -> TagRule:
    item = _fields(raw, where, {"columns_tagged", "mask"}, {"except"})
    if item["mask"] not in MASKS:
        raise ConfigError(f"{where}.mask: unknown mask '{item['mask']}'; expected one of {', '.join(MASKS)}")
    return TagRule(tag=item["columns_tagged"], mask=item["mask"], exempt=_exempt(item, where), origin=where)


def _classification(raw: Any, where: str) -> Classification:
    item = _fields(raw, where, {"columns"}, {"tags"})
    tags = item.get("tags")
    if not isinstance(tags, list) or not tags or not all(isinstance(t, str) and t for t in tags):
        raise ConfigError(f"{where}.tags: must be a non-empty list of tags, e.g. [pii]")
    return Classification(columns=_scoped(item["columns"], where, None, 3), tags=tuple(tags), origin=where)


def _row_filter(raw: Any, where: str, domain: str | None) -> RowFilter:
    item = _fields(raw, where, {"on", "where"}, {"except"})
    try:
        parse_one(item["where"], read="postgres")
    except SqlglotError as error:
        raise ConfigError(f"{where}.where: not a valid SQL predicate: {error}") from None
    try:  # DataFusion 55 would select other rows than the author wrote (gateway/similar_to.py)
        similar_to.check_statement(item["where"])
    except PlanningError as error:
        raise ConfigError(f"{where}.where: {error}") from None
    return RowFilter(
        on=_scoped(item["on"], where, domain, 2), where=item["where"], exempt=_exempt(item, where), origin=where
    )


def origin(file: Path, line: int) -> str:
    return f"{file}:{line}"
