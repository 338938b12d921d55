"""`python -m qa.evaluation` entry point."""

from qa.evaluation.cli import main

raise SystemExit(main())
