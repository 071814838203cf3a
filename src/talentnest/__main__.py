"""``python -m talentnest`` is the ``talentnest`` command."""

from talentnest.cli import main

raise SystemExit(main())
