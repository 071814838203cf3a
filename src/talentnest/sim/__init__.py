"""The deterministic simulation of a cluster: the real nodes in one process, on one seed (docs/simulation.md)."""
