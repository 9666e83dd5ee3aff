"""A governed mesh for the policy tests: the federation data plus platform and domain policies."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pyarrow as pa

from gateway.api import CallerContext
from gateway.auth import hash_password
from tests.e2e.federation_data import write_mesh
from tests.support.gateway import Credentials

PLATFORM_POLICIES = """policies:
  roles:
    analyst: [alice, frank, "group:analysts"]
    pii_reader: [bob]
    admin: [root]
    logistics_viewer: [carol]
    stock_viewer: [gina]
  grants:
    - {role: admin, on: "*"}
    - {role: analyst, on: "sales.customers"}
    - {role: analyst, on: "inventory.*"}
    - {role: pii_reader, on: sales.customers}
    - {role: logistics_viewer, on: logistics.shipments, columns: [shipment_id, order_id, carrier]}
    - {role: stock_viewer, on: inventory.order_items, columns: [order_id, quantity]}
  masks:
    - {on: sales.customers.name, mask: hash, except: [pii_reader, admin]}
    - {on: sales.customers.lifetime_value, mask: "null", except: [admin]}
    - {on: inventory.products.price, mask: last4, except: [admin]}
  row_filters:
    - {on: sales.customers, where: "country = current_user_attribute('country')", except: [admin]}
    - {on: inventory.products, where: "category <> 'tools'", except: [admin]}
    - {on: logistics.shipments, where: "carrier <> 'DHL'", except: [admin]}
    - {on: inventory.order_items, where: "quantity % 5 <> 0 AND product_id <> 7", except: [admin]}
  rules:
    - {columns_tagged: confidential, mask: redact, except: [admin]}
  classify:
    - {columns: "inventory.products.name", tags: [confidential]}
"""

# The sales team governs its own orders (a domain may only name its own products).
SALES_DOMAIN_POLICIES = """    policies:
      grants:
        - {role: analyst, on: sales.orders}
        - {role: pii_reader, on: sales.orders}
      row_filters:
        - {on: sales.orders, where: "status <> 'cancelled'", except: [admin]}
"""

USERS = {
    "alice": CallerContext(user="alice", attributes={"country": "DE"}),
    "dave": CallerContext(user="dave", attributes={"country": "FR", "groups": "analysts"}),
    "frank": CallerContext(user="frank", attributes={}),
    "bob": CallerContext(user="bob", attributes={"country": "US"}),
    "carol": CallerContext(user="carol", attributes={"country": "DE"}),
    "root": CallerContext(user="root", attributes={}),
    "eve": CallerContext(user="eve", attributes={"country": "DE"}),
    "gina": CallerContext(user="gina", attributes={}),
    "anonymous": CallerContext(user=None),
}


def credentials(user: str) -> Credentials:
    """Each test user's log-in (``anonymous`` has none)."""
    return Credentials(user, f"{user}-secret-password")


def auth_section() -> str:
    """An ``auth:`` file giving every user of :data:`USERS` a password, their groups and attributes."""
    lines = ["auth:", "  users:"]
    for name, caller in USERS.items():
        if caller.user is None:
            continue
        attributes = {k: v for k, v in caller.attributes.items() if k != "groups"}
        groups = [g for g in caller.attributes.get("groups", "").split(",") if g]
        lines.append(f"    - name: {name}")
        lines.append(f"      password_hash: '{_hash(credentials(name).password)}'")
        if groups:
            lines.append(f"      groups: [{', '.join(groups)}]")
        if attributes:
            lines.append("      attributes: {" + ", ".join(f"{k}: {v}" for k, v in attributes.items()) + "}")
    return "\n".join(lines) + "\n"


@cache
def _hash(password: str) -> str:
    return hash_password(password)


def write_governed_mesh(directory: Path, postgres_uri: str, schema: str, tables: dict[str, pa.Table]) -> Path:
    config = write_mesh(directory, postgres_uri, schema, tables)
    (config / "platform.yaml").write_text(PLATFORM_POLICIES)
    sales = config / "sales.yaml"
    sales.write_text(sales.read_text() + SALES_DOMAIN_POLICIES)
    return config
