"""``python -m p2p_teach.shapes.evaluate``: the command line (flags in :mod:`.cli`)."""

import os


def run() -> None:
    """Set the OpenMP wait policy before torch loads, then run :func:`.cli.main`."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning threads stall on a shared CPU
    from p2p_teach.shapes.evaluate.cli import main

    main()


if __name__ == "__main__":
    run()
