"""The receiving side: strict verification of jwtkeys tokens and loading JWKS documents."""
