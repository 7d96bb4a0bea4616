import sys

from aeforge.cli import main

sys.exit(main())
