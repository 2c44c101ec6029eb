"""One module per `wmtp` subcommand; each defines register(subparsers)."""
