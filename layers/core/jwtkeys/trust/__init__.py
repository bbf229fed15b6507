"""Trust targets: the verifiers the keeper keeps in step with the JWKS (ServiceNow, or none)."""
