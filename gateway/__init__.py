"""Meshgate: a federated SQL query gateway for a data mesh."""

__version__ = "0.1.0"
