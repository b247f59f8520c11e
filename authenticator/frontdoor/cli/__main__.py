import sys

from authenticator.frontdoor.cli import main

sys.exit(main())
