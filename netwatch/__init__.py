"""netwatch: find the devices that still talk to banned apps."""

__version__ = "0.1.0"
