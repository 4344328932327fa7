"""The platform's benchmark (issue 2): fund sagas per second and latency beside this machine's raw limits.

`make bench` (or `.venv/bin/python -m bench --help`) runs it and writes bench/results/<timestamp>.json
and bench/results/latest.json.
"""
