import sys

from graphjit.cli import main

sys.exit(main())
