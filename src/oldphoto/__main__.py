from oldphoto.cli import main

raise SystemExit(main())
