"""Service-independent machinery of the sandbox: errors, request parsing, signing, registry, clock."""
