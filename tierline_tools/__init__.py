"""tierline's tooling: the embedded stack, the synthetic world, the demo and the scenario runner.

Installed with the `tooling` extra (`pip install .[tooling]`); the runtime package `tierline` and the
services never need it, and the production image does not install it.
"""
