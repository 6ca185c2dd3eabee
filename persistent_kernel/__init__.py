"""persistent_kernel: a Jupyter kernel for Python whose sessions survive crashes."""

__version__ = "0.1.0"

KERNEL_NAME = "persistent-python3"
DISPLAY_NAME = "Python 3 (persistent)"
