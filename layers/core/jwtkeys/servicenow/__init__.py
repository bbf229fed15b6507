"""ServiceNow trust for a keyset: certificates and verifier maps kept in step with the JWKS."""
