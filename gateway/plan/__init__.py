"""The federation planner: rules over DataFusion plans, read and rewritten as Substrait."""
