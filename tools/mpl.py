"""matplotlib set up for files only: the ``Agg`` backend (no display needed) and one way to save."""

import os


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (imported lazily: matplotlib is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path, dpi=100):
    """Write ``fig`` to ``path`` (folders created), close it, and return the path."""
    plt = pyplot()
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def write_csv(path, header, rows):
    """The numbers behind a picture, as CSV beside it (``header`` names the columns)."""
    import csv

    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path
