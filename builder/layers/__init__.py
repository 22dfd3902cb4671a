"""Layer contents, the deterministic tar writer, compression and layer blobs."""
