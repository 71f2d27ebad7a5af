"""decrappify.metrics."""
