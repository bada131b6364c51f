"""oldphoto: restore old photographs and show, live, what the machine is doing with them."""

__version__ = "0.1.0"
