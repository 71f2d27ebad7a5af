"""decrappify.models."""
