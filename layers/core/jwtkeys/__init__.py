"""jwtkeys: JWTs signed by AWS KMS keys that rotate with zero downtime."""

__version__ = "0.1.0"
