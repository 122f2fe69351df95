import sys

from quant.cli.main import main

sys.exit(main())
