"""`python -m korean_llm` → the command line (korean_llm.cli)."""

import sys

from korean_llm.cli import main

sys.exit(main())
