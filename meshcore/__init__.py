"""Types both the gateway and the connectors use: the error hierarchy and a connector's settings.

Below both: it imports neither, so connectors never import the gateway.
"""
