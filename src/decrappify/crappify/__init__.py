"""decrappify.crappify."""
