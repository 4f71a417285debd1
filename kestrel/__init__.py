"""Kestrel: one endpoint in front of a pool of Anthropic accounts."""

__version__ = "0.1.0"
