"""ocibuild: daemonless, declarative, reproducible OCI images for Python apps."""

__version__ = "0.1.0"
