"""Data: datalists, readers, datasets, the synthetic benchmark, previews and the domain gap."""

from common.data import datalist, datasets, gap, io, mixing, phantoms, preview, synthetic

__all__ = ["datalist", "datasets", "gap", "io", "mixing", "phantoms", "preview", "synthetic"]
