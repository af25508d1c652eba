from adaptinf.programs.cli import main

raise SystemExit(main())
