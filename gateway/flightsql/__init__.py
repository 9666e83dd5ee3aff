"""Arrow Flight SQL protocol layer of Meshgate: RPCs in, engine calls out."""

from gateway.flightsql.server import FlightSqlServer

__all__ = ["FlightSqlServer"]
