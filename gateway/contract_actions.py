"""The Flight actions behind ``meshgate contract import`` and ``meshgate contract export`` (ODCS v3).

Import: JSON ``{"odcs": "<YAML>"}`` in. The document names a domain and, in its schema objects, products
that domain's file already publishes; the gateway sets their contract keys in that file
(:func:`gateway.odcs.merge_contract`) and applies it as ``meshgate domain apply`` would, so only the
domain's owners and admins may, nothing but contract keys changes, and the same self-serve checks hold.
The answer names the products changed, what of the document Meshgate did not keep, and any drift of the
live source from the new contract.

Export: JSON ``{"product": "domain.product"}`` in, the product's contract as ODCS YAML out, as the
caller sees the product under the policies (an unknown product and one the caller may not read get
the same answer).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.api import CallerContext
from gateway.errors import ConfigError, MeshgateError, NotFoundError
from gateway.odcs import contract_document, merge_contract, read_contract, to_yaml
from gateway.reload import action_request

if TYPE_CHECKING:
    from gateway.engine import Engine
    from gateway.reload import Reloader

IMPORT_ACTION = "meshgate.contract.import"
EXPORT_ACTION = "meshgate.contract.export"


def import_action(reloader: Reloader) -> Callable[[CallerContext, bytes], bytes]:
    """``meshgate contract import``: an ODCS document published into its domain's products."""

    def run(caller: CallerContext, body: bytes) -> bytes:
        try:
            imported = read_contract(action_request(body, "odcs", '{"odcs": "apiVersion: v3.1.0 ..."}'))
        except MeshgateError as error:
            reloader.engine.audit.event("contract_import", caller.user, "failed", str(error))
            raise
        applied = reloader.edit_domain(
            caller, imported.domain, lambda document: merge_contract(document, imported), "contract_import"
        )
        drift = []
        for name in imported.products:
            product = reloader.engine.catalog.find(imported.domain, name)
            drift += [f"{imported.domain}.{name}: {d}" for d in product.drift] if product is not None else []
        answer = {
            "file": applied.file.name,
            "domain": imported.domain,
            "products": list(imported.products),
            "notes": list(imported.notes),
            "drift": drift,
        }
        return json.dumps(answer).encode()

    return run


def export_action(engine: Engine) -> Callable[[CallerContext, bytes], bytes]:
    """``meshgate contract export``: a product's contract as ODCS YAML, as the caller may see it."""

    def run(caller: CallerContext, body: bytes) -> bytes:
        name = action_request(body, "product", '{"product": "sales.orders"}')
        domain, dot, product_name = name.partition(".")
        if not dot or not domain or not product_name or "." in product_name:
            raise ConfigError(f"'{name}' is not a product name: give DOMAIN.PRODUCT, e.g. sales.orders")
        product = engine.catalog.find(domain, product_name)
        access = engine.access(caller, product) if product is not None else None
        if product is None or access is None:
            raise NotFoundError(f"no data product '{name}' that you may read")
        owner = engine.catalog.domain(domain).config.owner
        document = contract_document(
            product, access, catalog=engine.catalog.name, owner=owner, show_sql=engine.sees_sources(caller)(domain)
        )
        return to_yaml(document).encode()

    return run
