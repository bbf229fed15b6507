"""The local AWS endpoint's server process: moto over real HTTP, with fidelity fixes.

Run as `python -m jwtkeys_tools.local.aws_server` (LocalAws does this). It serves two ports
on 127.0.0.1, both sharing moto's in-process backends:

- the main endpoint, every service (moto's host/signature-based dispatcher);
- an S3-only endpoint for plain-HTTP fetches of public documents: moto's dispatcher
  hands any path ending in `/.well-known/jwks.json` to its Cognito routes, so an
  anonymous GET of our JWKS would never reach S3 there.

A WSGI middleware in front of both records each AWS request as (service, operation),
injects faults on demand and answers the control API under `/_jwtkeys/`. When ready,
the process prints one JSON line on stdout: {"port": ..., "s3_port": ...}. It stops
when its stdin closes (its parent is gone or asked it to) or on SIGTERM/SIGINT.

Modules: `server` (the process, both ports), `middleware` (call counting, faults, the
control API), `naming` (which operation a request is), `faults` (fault rules and the
errors they answer with), `kms_fixes` (moto's KMS made to behave like AWS).
"""
