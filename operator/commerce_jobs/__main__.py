import sys

from commerce_jobs.cli import main

sys.exit(main())
