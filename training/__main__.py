"""`python -m training …` is `manset …`; spark-submit runs this file (docs/scale.md)."""

import sys

from training.cli import main

sys.exit(main())
