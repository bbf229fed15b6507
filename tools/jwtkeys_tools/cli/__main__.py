"""`python -m jwtkeys_tools.cli`: the `jwtkeys` command."""

import sys

from jwtkeys_tools.cli import main

sys.exit(main())
