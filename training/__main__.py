"""`python -m training …` is `manset …`; spark-submit runs this file on a cluster (docs/scale.md)."""

import sys

from training.cli import main

sys.exit(main())
