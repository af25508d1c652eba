from adaptinf.cli import main

raise SystemExit(main())
