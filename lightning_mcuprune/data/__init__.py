"""Datasets: Fashion-MNIST (from the system package) and keyword-spotting MFCCs."""
