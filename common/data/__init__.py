"""Data: datalists, readers, datasets and the synthetic benchmark."""
