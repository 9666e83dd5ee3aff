"""The mesh catalog: domains, their connectors and their data products.

Built from a :class:`~gateway.config.MeshConfig`. A domain whose source cannot be
reached does not take the others down: it is kept with its error, queries that touch
it fail with a message naming the domain and source, and it is retried on use.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from connectors.base import Connector, SourceObject
from connectors.registry import open_connector
from gateway.config import DomainConfig, MeshConfig, ProductConfig
from gateway.contracts import Drift, blocked_error, check_contract, status
from gateway.errors import MeshgateError, NotFoundError, SourceError, SourceUnavailableError

log = logging.getLogger(__name__)

RETRY_SECONDS = 10.0


@dataclass(frozen=True)
class Product:
    """A data product: ``domain.name``, where its rows live and their exact schema."""

    domain: str
    name: str
    source: SourceObject
    schema: pa.Schema
    connector: Connector
    description: str | None = None
    primary_key: tuple[str, ...] = ()
    declared: ProductConfig | None = None  # metadata, contract and checks, when the domain declares the product
    drift: tuple[Drift, ...] = ()  # how the source differs from the contract (gateway/contracts.py)
    not_null: tuple[str, ...] = ()  # columns the source declares NOT NULL (catalog metadata)

    @property
    def qualified_name(self) -> str:
        return f"{self.domain}.{self.name}"

    @property
    def status(self) -> str:
        """``ok``, ``flagged`` (drifted, still served) or ``blocked`` (drifted, not served)."""
        return status(self)

    @property
    def blocked(self) -> bool:
        return self.status == "blocked"


@dataclass
class Domain:
    """A domain as loaded: its products, or the error that keeps it offline."""

    config: DomainConfig
    connector: Connector | None = None
    products: dict[str, Product] = field(default_factory=dict)
    error: MeshgateError | None = None
    failed_at: float = 0.0

    @property
    def name(self) -> str:
        return self.config.name


class MeshCatalog:
    """Every domain of the mesh and its products, safe to read from many threads."""

    def __init__(self, config: MeshConfig) -> None:
        self.name = config.catalog
        self._lock = threading.Lock()
        self._version = 0
        self._domains = {domain.name: Domain(domain) for domain in config.domains}
        for domain in self._domains.values():
            self._load(domain)

    # -- reading ----------------------------------------------------------------
    @property
    def version(self) -> int:
        """Bumped whenever products may have changed: a load or refresh of a domain (new schemas,
        drift found, a product blocked, a domain going offline or coming back) or a reload."""
        return self._version

    def domains(self) -> list[Domain]:
        return list(self._domains.values())

    def domain(self, name: str) -> Domain:
        """The domain called ``name``, reloaded first if it failed a while ago."""
        domain = self._domains.get(name)
        if domain is None:
            known = ", ".join(sorted(self._domains)) or "none"
            raise NotFoundError(f"unknown domain '{name}' in catalog '{self.name}' (domains: {known})")
        if domain.error is not None and time.monotonic() - domain.failed_at > RETRY_SECONDS:
            self._load(domain)
        return domain

    def product(self, domain_name: str, product_name: str) -> Product:
        domain = self.domain(domain_name)
        if domain.error is not None:
            raise domain.error
        product = domain.products.get(product_name)
        if product is None:
            known = ", ".join(sorted(domain.products)) or "none"
            raise NotFoundError(
                f"unknown data product '{domain_name}.{product_name}' (domain '{domain_name}' has: {known})"
            )
        if product.blocked:
            raise blocked_error(product)
        return product

    def find(self, domain_name: str, product_name: str) -> Product | None:
        """The product if it exists and its domain is online; never raises."""
        domain = self._domains.get(domain_name)
        if domain is None or domain.error is not None:
            return None
        return domain.products.get(product_name)

    def products(self) -> Iterator[Product]:
        for domain in self._domains.values():
            yield from domain.products.values()

    def close(self) -> None:
        for domain in self._domains.values():
            if domain.connector is not None:
                domain.connector.close()

    def refresh(self, name: str) -> Domain:
        """Read a domain's products again from its source: new schemas, contracts checked again.

        A source that fails now takes the domain offline, as at start.
        """
        if name not in self._domains:
            self.domain(name)  # raises NotFoundError naming the domains
        domain = self._domains[name]
        self._load(domain)
        return domain

    # -- changing -----------------------------------------------------------------
    def build(self, config: DomainConfig) -> Domain:
        """A domain loaded off to the side (connected, products read); raises if it cannot load.

        Nothing changes in the catalog until :meth:`replace` installs it.
        """
        domain = Domain(config)
        try:
            domain.connector = open_connector(config.name, config.connector)
            domain.products = _load_products(config, domain.connector)
        except MeshgateError:
            if domain.connector is not None:
                domain.connector.close()
            raise
        except Exception as error:  # a driver's own exception
            if domain.connector is not None:
                domain.connector.close()
            raise SourceUnavailableError(config.name, config.connector.type, str(error)) from error
        return domain

    def replace(self, added: dict[str, Domain], removed: set[str], *, grace_seconds: float = 300.0) -> None:
        """Install ``added`` and drop ``removed`` in one step.

        Queries already running keep the products they resolved; the connectors of the
        old versions close after ``grace_seconds``, once those queries are long done.
        """
        with self._lock:
            domains = dict(self._domains)
            retired = [domains.pop(name) for name in removed if name in domains]
            retired += [domains[name] for name in added if name in domains]
            domains.update(added)
            self._domains = domains
            self._version += 1  # after the change: a plan keyed by the new version saw it
        for old in retired:
            if old.connector is not None:
                timer = threading.Timer(grace_seconds, old.connector.close)
                timer.daemon = True
                timer.start()

    # -- loading ----------------------------------------------------------------
    def _load(self, domain: Domain) -> None:
        with self._lock:
            try:
                if domain.connector is None:
                    domain.connector = open_connector(domain.name, domain.config.connector)
                domain.products = _load_products(domain.config, domain.connector)
                domain.error = None
            except MeshgateError as error:
                domain.error = error
                domain.failed_at = time.monotonic()
                log.error("domain '%s' is offline: %s", domain.name, error)
            except Exception as error:  # a driver's own exception: keep the domain offline, name it
                domain.error = SourceUnavailableError(domain.name, domain.config.connector.type, str(error))
                domain.failed_at = time.monotonic()
                log.exception("domain '%s' is offline", domain.name)
            self._version += 1  # after the change: a plan keyed by the new version saw it


def _load_products(config: DomainConfig, connector: Connector) -> dict[str, Product]:
    declared: list[tuple[str, SourceObject, str | None, ProductConfig | None]]
    if config.products is None:
        declared = [(found.name, found.source, found.description, None) for found in connector.discover()]
    else:
        declared = [
            (
                product.name,
                SourceObject(table=product.source, sql=product.sql, as_of=product.as_of),
                product.description,
                product,
            )
            for product in config.products
        ]
    products: dict[str, Product] = {}
    for name, source, description, metadata in declared:
        try:
            schema = connector.schema(source)
        except SourceError as error:
            raise _naming_product(error, config.name, name) from None
        key = metadata.primary_key if metadata is not None and metadata.primary_key else ()
        products[name] = Product(
            domain=config.name,
            name=name,
            source=source,
            schema=schema,
            connector=connector,
            description=description,
            primary_key=(key if set(key) <= set(schema.names) else ())
            or _primary_key(config.name, name, connector, source, schema),
            declared=metadata,
            drift=check_contract(metadata.columns if metadata is not None else None, schema),
            not_null=_not_null(config.name, name, connector, source),
        )
        if products[name].drift:
            log.warning(
                "product '%s.%s' drifted from its contract (%s): %s",
                config.name,
                name,
                products[name].status,
                "; ".join(str(d) for d in products[name].drift),
            )
    return products


def _naming_product(error: SourceError, domain: str, name: str) -> SourceError:
    """``error`` naming the product whose schema could not be read (when it does not already)."""
    message = str(error).partition("] ")[2] or str(error)
    if "data product '" in message:
        return error
    return type(error)(error.domain, error.source, f"data product '{domain}.{name}': {message}")


def _not_null(domain: str, name: str, connector: Connector, source: SourceObject) -> tuple[str, ...]:
    """The product's NOT NULL columns as its source declares them; none when it cannot say."""
    try:
        return connector.not_null(source)
    except MeshgateError as error:
        log.warning("product '%s.%s' reports no NOT NULL columns: %s", domain, name, error)
        return ()


def _primary_key(
    domain: str, name: str, connector: Connector, source: SourceObject, schema: pa.Schema
) -> tuple[str, ...]:
    """The source's primary key of a product; none when it cannot be read (the product still serves)."""
    try:
        key = connector.primary_key(source)
    except MeshgateError as error:
        log.warning("product '%s.%s' reports no primary key: %s", domain, name, error)
        return ()
    return key if set(key) <= set(schema.names) else ()
