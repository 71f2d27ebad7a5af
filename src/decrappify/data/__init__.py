"""decrappify.data."""
