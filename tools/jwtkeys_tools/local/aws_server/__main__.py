"""`python -m jwtkeys_tools.local.aws_server`: serve until stdin closes."""

from jwtkeys_tools.local.aws_server.server import serve

serve()
