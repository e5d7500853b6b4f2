"""``python -m sdk.serve ...`` is ``segrt serve ...``."""
import sys

from ..cli import main

sys.exit(main(["serve", *sys.argv[1:]]))
