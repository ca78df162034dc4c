"""``python -m ferry_cli`` runs the ``ferry`` command."""

from ferry_cli.app import main

if __name__ == "__main__":
    main()
