"""Substrait plan messages, generated from proto/substrait by proto/compile.py."""
