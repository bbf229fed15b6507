"""AWS CDK infrastructure of jwtkeys: one stack per keyset, one construct per concern."""
