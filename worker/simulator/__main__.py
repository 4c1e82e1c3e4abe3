"""Allow ``python -m worker.simulator``."""

from worker.simulator.cli import main

raise SystemExit(main())
