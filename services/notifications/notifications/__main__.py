from platform_runtime.cli import main

from .bootstrap import definition

main(definition)
