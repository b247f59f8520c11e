import sys

from authenticator.cli import main

sys.exit(main())
