"""The one place naming the kdflow image. `kdflow pipeline compile --image` (or KDFLOW_IMAGE)
overrides it at compile time; every task of a pipeline is then set to that image."""

import os

from kdflow import __version__

DEFAULT_IMAGE = f"ghcr.io/kdflow/kdflow:{__version__}"
IMAGE = os.environ.get("KDFLOW_IMAGE", DEFAULT_IMAGE)

# kfp is baked into the image: never pip-install it at run time (clusters may have no index access)
KDFLOW = {"base_image": IMAGE, "install_kfp_package": False}
