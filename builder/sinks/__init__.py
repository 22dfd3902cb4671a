"""Sinks take a finished image: OCI/docker tarball, layout directory, registry."""
