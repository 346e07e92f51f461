"""``python -m hookwire.testing.openai_server``: serve until interrupted."""

from .server import main

if __name__ == "__main__":
    main()
