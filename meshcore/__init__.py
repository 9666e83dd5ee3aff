"""Types both the gateway and the connectors use: the error hierarchy, a connector's settings,
and the Arrow type questions both ask (``is_text``).

Below both: it imports neither, so connectors never import the gateway.
"""
