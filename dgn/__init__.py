"""dgn: what a neuron wants to see.

DGN-AM (Nguyen et al., 2016): optimise the input code of a deep generator network so that the
generated image maximally activates a chosen unit of any classifier.
"""

from dgn.errors import DGNError

__version__ = "0.1.0"

__all__ = ["DGNError", "__version__"]
