"""The keeper: key lifecycle, registry and lease, JWKS publication, audit, its service."""
