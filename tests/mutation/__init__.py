"""Mutation testing of the trust boundary (``make mutate``): see __main__.py and scope.toml."""
