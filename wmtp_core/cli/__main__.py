import sys

from wmtp_core.cli import main

sys.exit(main())
