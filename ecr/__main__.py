from ecr.cli import main

raise SystemExit(main())
