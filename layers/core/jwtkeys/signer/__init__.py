"""The signing function's domain: what a caller may ask for, and issuing the token."""
