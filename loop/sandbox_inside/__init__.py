"""The inside of the sandbox: scripts run as `python -I -S -B <file>` in the sandbox, importing only
the standard library and each other (never `loop`). `judge.py` runs the tests, `child.py` the
program, `wire.py` carries plain values between them, `seccomp.py` closes process creation."""
