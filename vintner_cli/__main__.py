"""`python -m vintner_cli` runs the same program as the `vintner` command."""

from vintner_cli.main import main

raise SystemExit(main())
