"""``python -m common.label_app [FOLDER]``: prepares the MONAI Label app's working folder and
prints its path (for ``monailabel start_server --app``)."""

import sys

from common.label_app import prepare

print(prepare(sys.argv[1] if len(sys.argv) > 1 else None))
