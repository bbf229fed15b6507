"""The client SDK: tokens from the signing function for the services that need them.

- `TokenClient` caches tokens per (subject, audience, claims, ttl) and shares one
  request between concurrent callers;
- `LambdaInvoker`, `FunctionUrlInvoker` and `LocalInvoker` reach the function by
  Lambda Invoke, by its IAM-authenticated Function URL, or in-process;
- `jwtkeys.client.pysnc_auth.ServiceNowJwtBearerAuth` is a `requests` auth class for
  pysnc's `ServiceNowClient` (pysnc itself is the optional `jwtkeys[servicenow]` extra
  and is never imported here).
"""

from jwtkeys.client.invokers import FunctionUrlInvoker, LambdaInvoker, LocalInvoker
from jwtkeys.client.token_client import DEFAULT_REFRESH_MARGIN, Invoker, IssuedToken, TokenClient

__all__ = [
    "DEFAULT_REFRESH_MARGIN",
    "FunctionUrlInvoker",
    "Invoker",
    "IssuedToken",
    "LambdaInvoker",
    "LocalInvoker",
    "TokenClient",
]
