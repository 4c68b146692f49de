"""The command line: the parser and its commands (main), the build's flags (flags), progress and
the summary (console), and `show`."""
