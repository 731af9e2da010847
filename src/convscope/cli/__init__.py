"""The ``convscope`` command line: ``convscope --help`` lists the subcommands."""
