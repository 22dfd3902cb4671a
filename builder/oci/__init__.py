"""OCI image-spec types as plain data, and images as immutable values. No I/O here."""
