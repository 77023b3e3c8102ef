"""swarmforge: bake Docker images and run Docker Swarm clusters with Terraform."""

__version__ = "0.1.0"
