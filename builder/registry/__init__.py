"""OCI distribution client: references, auth, push and pull."""
