"""`python -m hwsim` is the `hwsim` command."""
from hwsim.cli import main

raise SystemExit(main())
