"""Connectors: one module per kind of source, all on the contract in :mod:`connectors.base`."""
