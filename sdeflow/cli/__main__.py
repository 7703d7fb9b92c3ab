"""``python -m sdeflow.cli`` (and ``torchrun ... -m sdeflow.cli train ...``)."""

from .main import main

if __name__ == "__main__":
    main(prog_name="sdeflow")
