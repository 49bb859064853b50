"""The network and what trains it: activations, losses, the MLP, optimizers. Torch only: no Lightning, no Hydra."""
