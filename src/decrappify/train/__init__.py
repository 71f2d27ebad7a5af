"""decrappify.train."""
