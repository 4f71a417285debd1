"""`python3 -m kestrel` and the zipapp's entry point."""

from kestrel.cli import main

raise SystemExit(main())
