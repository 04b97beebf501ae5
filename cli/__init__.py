"""cli: the `xmarks` command. Parses arguments and calls library functions; no game logic."""
