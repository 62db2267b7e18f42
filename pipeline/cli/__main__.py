"""``python -m pipeline.cli ...``: the ``yuflow`` command, as the processes start their children."""

from pipeline.cli import main

if __name__ == "__main__":
    main()
