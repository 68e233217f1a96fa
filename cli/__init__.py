"""The histoquery command line: thin subcommands over the packages."""
