"""``python -m segrt.serve ...`` is ``segrt serve ...``."""

import sys

from segrt.cli import main

sys.exit(main(["serve", *sys.argv[1:]]))
