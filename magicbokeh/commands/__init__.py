"""One module per CLI command beyond ``render``/``backends`` (see ``magicbokeh.cli.EXTRA_COMMANDS``)."""
