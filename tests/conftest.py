"""Root conftest: fixtures live in plugin modules, one per part of the world."""

pytest_plugins = [
    "tests.world.fixtures",
    "tests.peers.langfuse_standin.fixtures",
]
