"""KMS keys: algorithms, JWKs and kids, the KMS JWS signer, the key store and key states."""
