"""A free TCP port on this machine, for a test's own process (a second service instance, a mail stand-in)."""

import socket


def free_port() -> int:
    """A port the kernel just handed out and took back: free now, and not another test's fixed one."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
