"""Settings and queue topology: the one place that reads the environment."""

from config.settings import Settings, get_settings
from config.topology import QueueSpec, Topology, load_topology
from workflows.errors import TopologyError

__all__ = ["QueueSpec", "Settings", "Topology", "TopologyError", "get_settings", "load_topology"]
