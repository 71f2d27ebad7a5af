"""``python -m decrappify`` runs the command line."""

from decrappify.cli import main

main()
