"""A Langfuse server stand-in for tests, the demo and benchmarks (see README.md)."""

from .keys import Project
from .server import LangfuseStandIn, random_key_pair

__all__ = ["LangfuseStandIn", "Project", "random_key_pair"]
