"""The exit codes every command shares (see the package's docstring)."""

EXIT_OK = 0
EXIT_ERROR = 1
#: only with ``plan``/``apply --detailed-exitcode``: changes planned or applied
EXIT_CHANGES = 2
#: only with ``apply --detailed-exitcode``: some action was held
EXIT_HELD = 3
