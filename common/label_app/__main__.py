"""Prints the MONAI Label app's folder (for ``monailabel start_server --app``)."""

from common.label_app import APP_DIR

print(APP_DIR)
