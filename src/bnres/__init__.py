"""bnres: test two textbook claims (batch norm and step size; residual connections and depth) on real data."""

__version__ = "0.1.0"
