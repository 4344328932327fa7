"""`python -m platform_runtime.healthcheck`: exit 0 when this container's service answers /health/live.

The image's HEALTHCHECK runs it (the slim image has no curl). HEALTHCHECK_URL overrides the address, e.g. for
the SMTP sink, which answers on another port.
"""

import os
import sys
import urllib.request


def main() -> int:
    url = os.environ.get("HEALTHCHECK_URL") or f"http://127.0.0.1:{os.environ.get('HTTP_PORT', '8080')}/health/live"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - a fixed local http URL
            return 0 if response.status == 200 else 1
    except OSError as error:
        print(f"healthcheck {url}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
