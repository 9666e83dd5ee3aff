"""What the platform team watches: Prometheus metrics, OpenTelemetry traces, JSON log lines and
OpenLineage events. Each is an :class:`gateway.audit.AuditListener` (or a logging formatter),
switched on by ``meshgate serve``'s flags and costing nothing when off."""
