"""``python -m hilnas`` runs the CLI."""

from hilnas.cli import main

main()
