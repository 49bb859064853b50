"""MNIST: the IDX files (found, verified, decoded) and the LightningDataModule that batches them."""
