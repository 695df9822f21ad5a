"""Data: datalists, readers, datasets, the synthetic benchmark, previews, the domain gap and mixing masks."""

from common.data import datalist, datasets, gap, io, mixing, phantoms, preview, synthetic

__all__ = ["datalist", "datasets", "gap", "io", "mixing", "phantoms", "preview", "synthetic"]
