"""decrappify._napari."""
