import sys

from aeops.cli import main

sys.exit(main())
