"""Subcommands of the `senet` CLI.

Each module defines HELP (one line), add_arguments(parser) and run(args) -> int.
Modules import heavy libraries (torch, mlflow, optuna) inside run(), so that
`senet --help` stays fast.
"""

COMMANDS = [
    "describe",
    "train",
    "queue",
    "work",
    "status",
    "plan",
    "search",
    "tables",
    "figures",
    "excitation",
    "demo",
]
