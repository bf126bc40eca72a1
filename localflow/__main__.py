"""``python -m localflow`` is the ``localflow`` command."""
from localflow.cli import main

if __name__ == "__main__":
    main()
