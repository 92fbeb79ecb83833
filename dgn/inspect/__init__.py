"""Classic CNN visualisations built on the same layer addressing and pixel spaces."""
