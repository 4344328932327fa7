import io
import logging

import pytest
from platform_runtime import logging as logs


@pytest.fixture
def captured():
    """What the shared JSON logging (configured as service `probe`) writes, in a StringIO; the root logger restored after."""
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logs.configure("probe", "INFO", stream)
    yield stream
    root.handlers[:], level = saved
    root.setLevel(level)
