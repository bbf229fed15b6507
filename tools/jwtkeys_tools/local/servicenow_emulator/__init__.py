"""A ServiceNow emulator for development and tests: HTTPS, Table API, OAuth token endpoint.

It behaves like an instance where jwtkeys touches one (docs/emulators.md):
the Table API on `sys_certificate`, `oauth_entity`/`oauth_jwt`, `jwt_verifier_map`,
`sys_user` and `oauth_credential`; `POST /oauth_token.do` with the JWT bearer grant;
Basic and Bearer auth; faults and rate limits on demand. Every judgement of time uses
the clock it is given.

ACLs (our choice of the smallest plausible role set; `admin` passes every ACL):

| table | read | create / write / delete |
|---|---|---|
| `sys_certificate` | `certificate_admin` | `certificate_admin` |
| `oauth_entity` (+ `oauth_jwt`), `jwt_verifier_map`, `oauth_credential` | `oauth_admin` | same |
| `sys_user` | any authenticated user | `user_admin` |

So an integration user that keeps trust records in step needs `certificate_admin` and
`oauth_admin`. A read the ACL refuses answers like a missing record (an empty list, or
404 for one record); a refused write answers 403 `Operation Failed`.

Development only: never packaged into a Lambda.
"""

from jwtkeys_tools.local.servicenow_emulator.server import ServiceNowEmulator, error_body
from jwtkeys_tools.local.servicenow_emulator.token_endpoint import (
    ACCEPTED_ALGORITHMS,
    GENERIC_FAILURE,
    JWT_BEARER,
)

__all__ = [
    "ACCEPTED_ALGORITHMS",
    "GENERIC_FAILURE",
    "JWT_BEARER",
    "ServiceNowEmulator",
    "error_body",
]
