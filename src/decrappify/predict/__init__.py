"""decrappify.predict."""
