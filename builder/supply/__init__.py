"""Readers of finished images: signing, verification, SBOM, audit."""
