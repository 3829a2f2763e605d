"""hnnlab: Hamiltonian and Lagrangian neural networks that keep their predictions physical.

Subpackages: ``systems`` (analytic systems), ``integrators`` (symplectic and baseline methods),
``rollout`` (the time loop), ``data`` (HDF5 datasets), ``models`` (HNN, LNN, baselines),
``training`` (Lightning), ``audit`` (conservation checks). Import what you need from them; this
top-level module stays light so that ``import hnnlab`` is fast.
"""

__version__ = "0.1.0"
